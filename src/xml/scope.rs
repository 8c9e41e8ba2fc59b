//! Constant-time bookkeeping for checking one element (private): the namespace bindings in
//! effect ([`Bindings`], [`Inherited`]), the inherited ones used ([`UsedSet`]) and names already
//! seen on one start tag ([`SeenNames`]).
//!
//! Both answer in constant time however many entries they hold, so that checking a document
//! stays linear in its size whatever its shape. (A linear scan per lookup, as quick-xml's
//! `NsReader` and our earlier duplicate check did, let one 256 KiB message with 33 000
//! attributes cost seconds of CPU: issue 10.) A few entries live in a vector scanned from the
//! end, the fastest choice for ordinary stanzas; past [`SMALL`] entries a hash index takes
//! over. The index is std's `HashMap`/`HashSet` with its randomly keyed SipHash, so an attacker
//! cannot pick names that collide. Nothing here parses, allocates more than a constant factor
//! of the input, or performs I/O.

use std::borrow::Cow;
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use super::{NS_CLIENT, NS_STREAM};

/// Entries up to which a linear scan is used; beyond it, a hash index.
const SMALL: usize = 16;

/// What [`Bindings`] first reserves for the declarations' text: a couple of namespace names.
const ARENA_FIRST_BYTES: usize = 96;

/// `http://www.w3.org/XML/1998/namespace`, bound to the `xml` prefix by definition.
pub(crate) const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// `http://www.w3.org/2000/xmlns/`, bound to the `xmlns` prefix by definition.
pub(crate) const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Namespace declarations an element inherits from outside itself (a stream header's), made
/// once per stream and indexed, so that checking each element costs nothing per declaration it
/// does not use. The prefix and names every stream header declares (`stream`, the streams and
/// client namespaces) are not copied ([`kept`]): an ordinary header's declarations cost one
/// allocation, and reading a namespace name back costs no slicing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inherited {
    /// `(None, uri)` for the default namespace, `(Some(prefix), uri)` otherwise; in order.
    bindings: Vec<(Option<Cow<'static, str>>, Cow<'static, str>)>,
    /// Prefix (`""` for the default namespace) to the index of its last binding, when there are
    /// more than [`SMALL`].
    index: Option<HashMap<String, usize>>,
    /// The last binding of the default namespace, looked up for every unprefixed element.
    default: Option<usize>,
}

/// `text` as a declaration keeps it: borrowed when it is a name every stream header declares.
fn kept(text: &str) -> Cow<'static, str> {
    match text {
        NS_CLIENT => Cow::Borrowed(NS_CLIENT),
        NS_STREAM => Cow::Borrowed(NS_STREAM),
        "stream" => Cow::Borrowed("stream"),
        other => Cow::Owned(other.to_owned()),
    }
}

impl Inherited {
    /// Indexes `bindings`, `(None, uri)` for the default namespace and `(Some(prefix), uri)`
    /// otherwise (later ones win for a repeated prefix).
    pub fn new<P: AsRef<str>, U: AsRef<str>>(bindings: impl IntoIterator<Item = (Option<P>, U)>) -> Self {
        let bindings = bindings.into_iter();
        let mut inherited = Inherited::with_capacity(bindings.size_hint().0);
        for (prefix, uri) in bindings {
            inherited.push(prefix.as_ref().map(AsRef::as_ref), uri.as_ref());
        }
        inherited
    }

    /// None yet, with room for `count` declarations.
    pub fn with_capacity(count: usize) -> Self {
        Inherited { bindings: Vec::with_capacity(count), index: None, default: None }
    }

    /// Adds a declaration after the others (it wins over an earlier one of the same prefix).
    pub fn push(&mut self, prefix: Option<&str>, uri: &str) {
        let i = self.bindings.len();
        if prefix.is_none() {
            self.default = Some(i);
        }
        self.bindings.push((prefix.map(kept), kept(uri)));
        if let Some(index) = &mut self.index {
            index.insert(prefix.unwrap_or_default().to_owned(), i);
        } else if self.bindings.len() > SMALL {
            let index = (0..self.bindings.len()).map(|j| (self.prefix(j).unwrap_or_default().to_owned(), j)).collect();
            self.index = Some(index);
        }
    }

    /// How many declarations there are.
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// The `i`th declaration's prefix, `None` for the default namespace.
    pub fn prefix(&self, i: usize) -> Option<&str> {
        self.bindings[i].0.as_deref()
    }

    /// The `i`th declaration's namespace name.
    pub fn uri(&self, i: usize) -> &str {
        &self.bindings[i].1
    }

    /// The last binding of `prefix` (`""`: the default namespace).
    pub fn lookup(&self, prefix: &str) -> Option<usize> {
        if prefix.is_empty() {
            return self.default;
        }
        match &self.index {
            Some(index) => index.get(prefix).copied(),
            None => self.bindings.iter().rposition(|(p, _)| same(p.as_deref().unwrap_or(""), prefix)),
        }
    }
}

/// One namespace declaration made inside the element being checked: offsets into
/// [`Bindings::arena`].
#[derive(Debug, Clone, Copy)]
struct Binding {
    /// The declared prefix; empty for the default namespace.
    prefix: (u32, u32),
    /// The namespace name (unescaped); empty for `xmlns=""` (no default namespace).
    uri: (u32, u32),
    /// Nesting depth of the element that declared it (the root is 1).
    depth: usize,
    /// The binding of the same prefix that this one hides, restored when this one goes.
    shadows: Option<usize>,
}

/// The namespace bindings an element being checked has declared and that are still in effect,
/// innermost last. The element arrives in pieces, read by read, and the buffer holding it may
/// move in between, so each declaration's prefix and namespace name are copied into one arena
/// (a few dozen bytes for an ordinary stanza) instead of being borrowed.
///
/// Invariant: `list` is ordered by `depth`; `default` is the innermost binding of the default
/// namespace; when `index` exists it maps every other prefix in `list` to its innermost binding;
/// each binding's `shadows` names the next one out for its prefix.
#[derive(Debug, Default)]
pub(crate) struct Bindings {
    arena: String,
    list: Vec<Binding>,
    /// The default namespace, looked up for every unprefixed element: kept apart from the
    /// index so that it costs no hashing.
    default: Option<usize>,
    index: Option<HashMap<String, usize>>,
}

impl Bindings {
    /// No bindings (for the next element), keeping small allocations for reuse.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.list.clear();
        self.default = None;
        self.index = None;
    }

    /// Memory held for reuse, in bytes (what an idle session keeps).
    pub fn capacity_bytes(&self) -> usize {
        self.arena.capacity() + self.list.capacity() * std::mem::size_of::<Binding>()
    }

    fn push_arena(&mut self, text: &str) -> (u32, u32) {
        if self.arena.capacity() == 0 {
            // Room for the declarations of an ordinary element in one allocation, instead of
            // one that grows with each.
            self.arena.reserve(ARENA_FIRST_BYTES);
        }
        let start = self.arena.len();
        self.arena.push_str(text);
        // An element is at most a few hundred KiB: offsets fit in 32 bits.
        (start as u32, text.len() as u32)
    }

    fn text(&self, (start, len): (u32, u32)) -> &str {
        &self.arena[start as usize..(start + len) as usize]
    }

    /// Adds a declaration made by the element at `depth` (`prefix` `""` for `xmlns=`).
    pub fn declare(&mut self, prefix: &str, uri: &str, depth: usize) {
        let at = self.list.len();
        let shadows = if prefix.is_empty() {
            self.default.replace(at)
        } else {
            match &mut self.index {
                Some(index) => index.insert(prefix.to_owned(), at),
                None => self.lookup_scan(prefix),
            }
        };
        let binding = Binding { prefix: self.push_arena(prefix), uri: self.push_arena(uri), depth, shadows };
        self.list.push(binding);
        if self.index.is_none() && self.list.len() > SMALL {
            // Built once; from then on kept up to date by `declare` and `leave`.
            let mut index = HashMap::with_capacity(4 * SMALL);
            for (i, binding) in self.list.iter().enumerate() {
                if binding.prefix.1 > 0 {
                    index.insert(self.text(binding.prefix).to_owned(), i);
                }
            }
            self.index = Some(index);
        }
    }

    /// Removes the declarations made at `depth` or deeper (the element at `depth` ended).
    pub fn leave(&mut self, depth: usize) {
        while let Some(&last) = self.list.last() {
            if last.depth < depth {
                break;
            }
            self.list.pop();
            if last.prefix.1 == 0 {
                self.default = last.shadows;
            } else if let Some(index) = &mut self.index {
                let prefix = &self.arena[last.prefix.0 as usize..(last.prefix.0 + last.prefix.1) as usize];
                match last.shadows {
                    Some(outer) => index.insert(prefix.to_owned(), outer),
                    None => index.remove(prefix),
                };
            }
        }
        if let Some(last) = self.list.last() {
            self.arena.truncate((last.uri.0 + last.uri.1) as usize);
        } else {
            self.arena.clear();
        }
    }

    fn lookup_scan(&self, prefix: &str) -> Option<usize> {
        self.list.iter().rposition(|b| same(self.text(b.prefix), prefix))
    }

    /// The innermost binding of `prefix` (`""`: the default namespace).
    pub fn lookup(&self, prefix: &str) -> Option<usize> {
        if prefix.is_empty() {
            return self.default;
        }
        match &self.index {
            Some(index) => index.get(prefix).copied(),
            None => self.lookup_scan(prefix),
        }
    }

    /// The namespace name of binding `i`.
    pub fn uri(&self, i: usize) -> &str {
        self.text(self.list[i].uri)
    }

    /// The prefix of binding `i` (`""` for the default namespace).
    #[cfg(test)]
    pub fn prefix(&self, i: usize) -> &str {
        self.text(self.list[i].prefix)
    }

    /// Whether binding `i` was declared by the element at `depth`.
    pub fn declared_at(&self, i: usize, depth: usize) -> bool {
        self.list[i].depth == depth
    }
}

/// Which of a stream header's declarations an element used: a bit per declaration for the first
/// 64 (a header rarely has more than three), a set beyond.
/// The indices of a [`UsedSet`], in increasing order.
#[derive(Debug)]
pub(crate) struct UsedIter {
    low: u64,
    /// In decreasing order (taken from the end).
    high: Vec<usize>,
}

impl Iterator for UsedIter {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.low != 0 {
            let i = self.low.trailing_zeros() as usize;
            self.low &= self.low - 1;
            return Some(i);
        }
        self.high.pop()
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct UsedSet {
    low: u64,
    high: Option<HashSet<usize>>,
}

impl UsedSet {
    /// Records `i`.
    pub fn insert(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            self.high.get_or_insert_with(HashSet::new).insert(i);
        }
    }

    /// Forgets everything (keeping nothing allocated).
    pub fn clear(&mut self) {
        self.low = 0;
        self.high = None;
    }

    /// The indices recorded, in increasing order.
    pub fn iter(&self) -> UsedIter {
        let high = match &self.high {
            None => Vec::new(),
            Some(high) => {
                let mut high: Vec<usize> = high.iter().copied().collect();
                high.sort_unstable_by(|a, b| b.cmp(a));
                high
            }
        };
        UsedIter { low: self.low, high }
    }

    /// Calls `visit` with each index recorded, in increasing order: the bits of the first 64
    /// inline (an element uses one or two), the rare indices beyond sorted out of line. What
    /// namespace completion runs for every relayed element, without the iterator's `Vec`.
    #[inline]
    pub fn for_each(&self, mut visit: impl FnMut(usize)) {
        let mut low = self.low;
        while low != 0 {
            visit(low.trailing_zeros() as usize);
            low &= low - 1;
        }
        if self.high.is_some() {
            self.iter().skip(self.low.count_ones() as usize).for_each(visit);
        }
    }

    /// How many indices are recorded.
    pub fn len(&self) -> usize {
        self.low.count_ones() as usize + self.high.as_ref().map_or(0, HashSet::len)
    }

    /// Whether `i` is recorded.
    #[cfg(test)]
    pub fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.high.as_ref().is_some_and(|high| high.contains(&i))
        }
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
    /// A binding declared in the element (an index into [`Bindings`]).
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
    /// How many names the caller expects: the size of the hash set when it is made.
    expected: usize,
}

impl<K: Copy + Eq + Hash> SeenNames<K> {
    /// An empty set (allocates nothing until the first insert).
    #[cfg(test)]
    pub fn new() -> Self {
        SeenNames { few: Vec::new(), many: None, expected: 0 }
    }

    /// An empty set sized for about `expected` names, so that filling it never rehashes.
    pub fn with_capacity(expected: usize) -> Self {
        SeenNames { few: Vec::with_capacity(expected.min(SMALL + 1)), many: None, expected }
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
            let mut many = HashSet::with_capacity(self.expected.max(2 * SMALL));
            many.extend(self.few.drain(..));
            self.many = Some(many);
        }
        true
    }
}

/// The raw names of one start tag's many attributes, by a randomly keyed hash of their bytes:
/// each name is hashed once and nothing is allocated per name (the names stay in the element;
/// the set holds the indices of its attributes).
#[derive(Debug)]
pub(crate) struct ManyNames<S = RandomState> {
    keys: S,
    /// The keyed hash of a name to the first attribute whose name has it.
    first: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
}

impl ManyNames {
    /// An empty set with room for `expected` names.
    pub fn with_capacity(expected: usize) -> Self {
        ManyNames::with_keys(RandomState::new(), expected)
    }
}

impl<S: BuildHasher> ManyNames<S> {
    /// The same with the name hashes made by `keys`.
    fn with_keys(keys: S, expected: usize) -> Self {
        ManyNames { keys, first: HashMap::with_capacity_and_hasher(expected, Default::default()) }
    }

    /// Records the name of attribute `i` (`name_of(j)`: the name of attribute `j`, for every
    /// `j <= i`); false if an earlier attribute has the same name.
    pub fn insert<'a>(&mut self, i: u32, name_of: impl Fn(u32) -> &'a [u8]) -> bool {
        let name = name_of(i);
        match self.first.entry(self.keys.hash_one(name)) {
            Entry::Vacant(slot) => {
                slot.insert(i);
                true
            }
            Entry::Occupied(slot) if name_of(*slot.get()) == name => false,
            // Two different names with the same 64-bit keyed hash (the key is random: nothing an
            // attacker can aim at): the exact answer from the names before.
            Entry::Occupied(_) => !(0..i).any(|j| name_of(j) == name),
        }
    }
}

/// The hasher of [`ManyNames`]'s map, whose keys are already keyed hashes.
#[derive(Debug, Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u64` keys (see `write_u64`); kept correct for any other.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_declarations_shadow_and_come_back() {
        for count in [3, SMALL * 3] {
            let mut scope = Bindings::default();
            scope.declare("", "urn:d", 1);
            scope.declare("p", "urn:p", 1);
            let names: Vec<String> = (0..count).map(|i| format!("q{i}")).collect();
            for (level, name) in names.iter().enumerate() {
                let depth = level + 2;
                scope.declare(name, &format!("urn:{level}"), depth);
                scope.declare("p", &format!("urn:p{level}"), depth);
            }
            let uri = |scope: &Bindings, prefix: &str| scope.lookup(prefix).map(|i| scope.uri(i).to_owned());
            assert_eq!(uri(&scope, "p").as_deref(), Some(format!("urn:p{}", count - 1).as_str()));
            assert_eq!(uri(&scope, "q0").as_deref(), Some("urn:0"));
            scope.leave(3);
            assert_eq!(uri(&scope, "p").as_deref(), Some("urn:p0"));
            assert_eq!(uri(&scope, "q1"), None);
            scope.leave(2);
            assert_eq!(uri(&scope, "p").as_deref(), Some("urn:p"));
            assert_eq!(uri(&scope, "").as_deref(), Some("urn:d"));
            assert_eq!(uri(&scope, "q0"), None);
            // Declarations made after a leave reuse the arena.
            scope.declare("", "", 2);
            assert_eq!(uri(&scope, "").as_deref(), Some(""));
            let i = scope.lookup("").expect("declared");
            assert_eq!((scope.prefix(i), scope.declared_at(i, 2)), ("", true));
            scope.leave(1);
            assert_eq!(uri(&scope, ""), None);
            assert_eq!(scope.arena.len(), 0);
        }
    }

    #[test]
    fn inherited_bindings_are_indexed_past_the_small_set() {
        for count in [3, SMALL * 3] {
            let mut bindings = vec![(None, "urn:d".to_owned()), (Some("p".to_owned()), "urn:p".to_owned())];
            bindings.extend((0..count).map(|i| (Some(format!("h{i}")), format!("urn:h{i}"))));
            bindings.push((Some("p".to_owned()), "urn:p2".to_owned()));
            let inherited = Inherited::new(bindings);
            assert_eq!(inherited.lookup(""), Some(0));
            assert_eq!(inherited.lookup("p"), Some(count + 2), "the later binding wins");
            assert_eq!(inherited.lookup("h2"), Some(4));
            assert_eq!(inherited.lookup("h"), None);
        }
    }

    #[test]
    fn used_sets_list_in_order() {
        let mut used = UsedSet::default();
        for i in [70, 3, 0, 70, 64, 3] {
            used.insert(i);
        }
        assert_eq!(used.iter().collect::<Vec<_>>(), [0, 3, 64, 70]);
        let mut visited = Vec::new();
        used.for_each(|i| visited.push(i));
        assert_eq!(visited, [0, 3, 64, 70]);
        let mut only_low = UsedSet::default();
        only_low.insert(63);
        only_low.insert(1);
        let mut visited = Vec::new();
        only_low.for_each(|i| visited.push(i));
        assert_eq!(visited, [1, 63]);
        assert_eq!(used.len(), 4);
        assert!(used.contains(64) && !used.contains(65) && used.contains(3) && !used.contains(4));
        used.clear();
        assert_eq!(used.len(), 0);
    }

    #[test]
    fn many_names_find_every_repeat() {
        let names: Vec<String> = (0..500).map(|i| format!("a{}", i % 300)).collect();
        let mut many = ManyNames::with_capacity(4);
        for (i, name) in names.iter().enumerate() {
            let unique = many.insert(i as u32, |j| names[j as usize].as_bytes());
            assert_eq!(unique, i < 300, "{name} at {i}");
        }
        // With every name colliding (a hasher that ignores its input), the same answers.
        let mut colliding = ManyNames::with_keys(BuildHasherDefault::<Constant>::default(), 4);
        for (i, name) in names.iter().enumerate() {
            let unique = colliding.insert(i as u32, |j| names[j as usize].as_bytes());
            assert_eq!(unique, i < 300, "{name} at {i}");
        }
    }

    /// A hasher whose every hash is 0.
    #[derive(Default)]
    struct Constant;

    impl Hasher for Constant {
        fn finish(&self) -> u64 {
            0
        }

        fn write(&mut self, _: &[u8]) {}
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
        // Sized up front: the same answers.
        let mut sized = SeenNames::with_capacity(names.len());
        for name in &names {
            assert!(sized.insert(name.as_str()));
        }
        assert!(!sized.insert("a1"));
    }
}
