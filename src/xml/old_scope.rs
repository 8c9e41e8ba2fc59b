//! The namespace scope of the previous checker ([`super::wf`], test-only): kept with it as the
//! reference for the one-pass checker's differential tests.
#![allow(dead_code, missing_docs)]

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Entries up to which a linear scan is used; beyond it, a hash index.
const SMALL: usize = 16;

/// `http://www.w3.org/XML/1998/namespace`, bound to the `xml` prefix by definition.
pub(crate) const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// `http://www.w3.org/2000/xmlns/`, bound to the `xmlns` prefix by definition.
pub(crate) const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Namespace declarations an element inherits from outside itself (a stream header's), made
/// once per stream and indexed, so that checking each element costs nothing per declaration it
/// does not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inherited {
    /// `(None, uri)` for the default namespace, `(Some(prefix), uri)` otherwise; in order.
    bindings: Vec<(Option<String>, String)>,
    /// Prefix (`""` for the default namespace) to the index of its last binding in `bindings`,
    /// when there are more than [`SMALL`].
    index: Option<HashMap<String, usize>>,
}

impl Inherited {
    /// Indexes `bindings` (later ones win for a repeated prefix).
    pub fn new(bindings: Vec<(Option<String>, String)>) -> Self {
        let index = (bindings.len() > SMALL).then(|| {
            bindings.iter().enumerate().map(|(i, (prefix, _))| (prefix.clone().unwrap_or_default(), i)).collect()
        });
        Inherited { bindings, index }
    }

    /// The declarations, in their original order.
    pub fn bindings(&self) -> &[(Option<String>, String)] {
        &self.bindings
    }

    fn lookup(&self, prefix: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(prefix).copied(),
            None => self.bindings.iter().rposition(|(p, _)| same(p.as_deref().unwrap_or(""), prefix)),
        }
    }
}

/// One namespace declaration made inside the document.
#[derive(Debug)]
struct Binding<'a> {
    /// The declared prefix; `""` for the default namespace.
    prefix: &'a str,
    /// The namespace name (unescaped); `""` for `xmlns=""` (no default namespace).
    uri: Cow<'a, str>,
    /// Nesting depth of the element that declared it (the root is 1).
    depth: usize,
    /// The binding of the same prefix that this one hides, restored when this one goes.
    shadows: Option<usize>,
}

/// The namespace bindings in effect at the current point of a document: those it declared,
/// innermost last, then those it inherited.
///
/// Invariant: `bindings` is ordered by `depth`; `default` is the innermost binding of the
/// default namespace; when `index` exists it maps every other prefix in `bindings` to the index
/// of its innermost binding; each binding's `shadows` names the next one out for its prefix.
#[derive(Debug)]
pub(crate) struct NsScope<'a> {
    bindings: Vec<Binding<'a>>,
    /// The default namespace, looked up for every unprefixed element: kept apart from the
    /// index so that it costs no hashing.
    default: Option<usize>,
    index: Option<HashMap<&'a str, usize>>,
    outer: Option<&'a Inherited>,
    /// The inherited bindings a name resolved to.
    used: SeenNames<usize>,
}

impl<'a> NsScope<'a> {
    /// An empty scope inside `outer`.
    pub fn new(outer: Option<&'a Inherited>) -> Self {
        NsScope { bindings: Vec::new(), default: None, index: None, outer, used: SeenNames::new() }
    }

    /// Adds a declaration made by the element at `depth` (`prefix` `""` for `xmlns=`).
    pub fn declare(&mut self, prefix: &'a str, uri: Cow<'a, str>, depth: usize) {
        let at = self.bindings.len();
        let shadows = match &mut self.index {
            _ if prefix.is_empty() => self.default.replace(at),
            Some(index) => index.insert(prefix, at),
            None => self.bindings.iter().rposition(|b| same(b.prefix, prefix)),
        };
        self.bindings.push(Binding { prefix, uri, depth, shadows });
        if self.index.is_none() && self.bindings.len() > SMALL {
            // Built once; from then on kept up to date by `declare` and `leave`.
            let named = self.bindings.iter().enumerate().filter(|(_, b)| !b.prefix.is_empty());
            self.index = Some(named.map(|(i, b)| (b.prefix, i)).collect());
        }
    }

    /// Removes the declarations made at `depth` or deeper (the element at `depth` ended).
    pub fn leave(&mut self, depth: usize) {
        while let Some(last) = self.bindings.last() {
            if last.depth < depth {
                break;
            }
            let (prefix, shadows) = (last.prefix, last.shadows);
            self.bindings.pop();
            if prefix.is_empty() {
                self.default = shadows;
            } else if let Some(index) = &mut self.index {
                match shadows {
                    Some(outer) => index.insert(prefix, outer),
                    None => index.remove(prefix),
                };
            }
        }
    }

    /// The innermost binding of `prefix` (`""`: the default namespace), recording the use of
    /// an inherited one. `xml` is not looked up here (see [`Self::resolve`]).
    fn lookup(&mut self, prefix: &str) -> Option<Resolved> {
        let own = match &self.index {
            _ if prefix.is_empty() => self.default,
            Some(index) => index.get(prefix).copied(),
            None => self.bindings.iter().rposition(|b| same(b.prefix, prefix)),
        };
        if let Some(i) = own {
            return Some(Resolved::Binding(i));
        }
        let i = self.outer?.lookup(prefix)?;
        self.used.insert(i);
        Some(Resolved::Inherited(i))
    }

    /// Resolves the prefix of an element (`use_default`) or attribute name.
    pub fn resolve(&mut self, prefix: Option<&str>, use_default: bool) -> Resolved {
        match prefix {
            None if !use_default => Resolved::NoNamespace,
            None => match self.lookup("") {
                Some(found) if self.uri(found).is_some_and(|uri| !uri.is_empty()) => found,
                _ => Resolved::NoNamespace,
            },
            Some("xml") => Resolved::Xml,
            Some(prefix) => self.lookup(prefix).unwrap_or(Resolved::Undeclared),
        }
    }

    /// The namespace name a [`Resolved`] stands for (`None`: no namespace or undeclared).
    pub fn uri(&self, resolved: Resolved) -> Option<&str> {
        match resolved {
            Resolved::Binding(i) => Some(self.bindings[i].uri.as_ref()),
            Resolved::Inherited(i) => self.outer.map(|outer| outer.bindings[i].1.as_str()),
            Resolved::Xml => Some(NS_XML),
            Resolved::NoNamespace | Resolved::Undeclared => None,
        }
    }

    /// Like [`Self::uri`] but keeping the document's lifetime (a copy only if it was unescaped).
    pub fn uri_cow(&self, resolved: Resolved) -> Option<Cow<'a, str>> {
        match resolved {
            Resolved::Binding(i) => Some(self.bindings[i].uri.clone()),
            Resolved::Inherited(i) => self.outer.map(|outer| Cow::Borrowed(outer.bindings[i].1.as_str())),
            Resolved::Xml => Some(Cow::Borrowed(NS_XML)),
            Resolved::NoNamespace | Resolved::Undeclared => None,
        }
    }

    /// The inherited bindings that names resolved to, as indices in increasing order.
    pub fn inherited_used(self) -> Vec<usize> {
        let mut used = self.used.into_vec();
        used.sort_unstable();
        used
    }
}

/// `a == b`, without a call into `memcmp` for the short strings prefixes are: with the empty
/// default-namespace prefix compared on every unprefixed element, that call dominated the cost of
/// element-dense documents.
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// What a name's prefix resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// No namespace: an unprefixed attribute, or an unprefixed element without a default
    /// namespace (or with `xmlns=""`).
    NoNamespace,
    /// The built-in `xml` prefix.
    Xml,
    /// A binding declared in the document (an index into the scope).
    Binding(usize),
    /// An inherited binding (an index into [`Inherited::bindings`]).
    Inherited(usize),
    /// A prefix with no declaration in scope.
    Undeclared,
}

/// Names already seen on one start tag: the first few in a vector, the rest in a hash set.
#[derive(Debug)]
pub(crate) struct SeenNames<K> {
    few: Vec<K>,
    many: Option<HashSet<K>>,
}

impl<K: Copy + Eq + Hash> SeenNames<K> {
    /// An empty set (allocates nothing until the first insert).
    pub fn new() -> Self {
        SeenNames { few: Vec::new(), many: None }
    }

    /// Records `name`; false if it was already there.
    pub fn insert(&mut self, name: K) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(name);
        }
        if self.few.contains(&name) {
            return false;
        }
        self.few.push(name);
        if self.few.len() > SMALL {
            self.many = Some(self.few.drain(..).collect());
        }
        true
    }

    /// The names, in no particular order.
    pub fn into_vec(self) -> Vec<K> {
        match self.many {
            Some(many) => many.into_iter().collect(),
            None => self.few,
        }
    }

    /// Empties the set for the next start tag. A large hash set is dropped rather than cleared:
    /// clearing costs its capacity, which an earlier tag may have made large.
    pub fn clear(&mut self) {
        self.few.clear();
        self.many = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri_of<'s>(scope: &'s mut NsScope<'_>, prefix: Option<&str>) -> Option<&'s str> {
        let resolved = scope.resolve(prefix, true);
        scope.uri(resolved)
    }

    fn header(count: usize) -> Inherited {
        let mut bindings = vec![(None, "urn:d".to_owned()), (Some("p".to_owned()), "urn:p".to_owned())];
        bindings.extend((0..count).map(|i| (Some(format!("h{i}")), format!("urn:h{i}"))));
        Inherited::new(bindings)
    }

    #[test]
    fn nested_declarations_shadow_and_come_back() {
        for count in [3, SMALL * 3] {
            let outer = header(count);
            let mut scope = NsScope::new(Some(&outer));
            let names: Vec<String> = (0..count).map(|i| format!("q{i}")).collect();
            for (depth, name) in names.iter().enumerate() {
                scope.declare(name, Cow::Owned(format!("urn:{depth}")), depth + 1);
                scope.declare("p", Cow::Owned(format!("urn:p{depth}")), depth + 1);
            }
            assert_eq!(uri_of(&mut scope, Some("p")), Some(format!("urn:p{}", count - 1).as_str()));
            assert_eq!(uri_of(&mut scope, Some("q0")), Some("urn:0"));
            scope.leave(2);
            assert_eq!(uri_of(&mut scope, Some("p")), Some("urn:p0"));
            assert_eq!(uri_of(&mut scope, Some("q1")), None);
            scope.leave(1);
            assert_eq!(uri_of(&mut scope, Some("p")), Some("urn:p"));
            assert_eq!(uri_of(&mut scope, None), Some("urn:d"));
            assert_eq!(uri_of(&mut scope, Some("h2")), Some("urn:h2"));
            assert_eq!(scope.resolve(Some("q0"), false), Resolved::Undeclared);
            scope.declare("", Cow::Borrowed(""), 1);
            assert_eq!(scope.resolve(None, true), Resolved::NoNamespace);
            assert_eq!(scope.resolve(Some("xml"), false), Resolved::Xml);
            assert_eq!(scope.inherited_used(), vec![0, 1, 4], "{count}");
        }
    }

    #[test]
    fn inherited_bindings_are_recorded_only_when_used() {
        let outer = header(40);
        let mut scope = NsScope::new(Some(&outer));
        scope.declare("", Cow::Borrowed("urn:own"), 1);
        assert_eq!(uri_of(&mut scope, None), Some("urn:own"));
        assert_eq!(scope.resolve(None, false), Resolved::NoNamespace);
        assert_eq!(uri_of(&mut scope, Some("h39")), Some("urn:h39"));
        assert_eq!(uri_of(&mut scope, Some("h39")), Some("urn:h39"));
        assert_eq!(scope.resolve(Some("h40"), false), Resolved::Undeclared);
        assert_eq!(scope.inherited_used(), vec![41]);
        let mut alone = NsScope::new(None);
        assert_eq!(alone.resolve(None, true), Resolved::NoNamespace);
        assert_eq!(alone.resolve(Some("p"), false), Resolved::Undeclared);
    }

    #[test]
    fn seen_names_past_the_small_set() {
        let mut seen = SeenNames::new();
        let names: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
        for name in &names {
            assert!(seen.insert(name.as_str()));
        }
        for name in &names {
            assert!(!seen.insert(name.as_str()));
        }
        seen.clear();
        assert!(seen.insert("a1"));
        assert!(!seen.insert("a1"));
    }
}
