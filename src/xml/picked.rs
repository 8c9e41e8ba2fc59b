//! A few named attribute values of one start tag, kept in one string (private): what the
//! gateway keeps of a server's stream header and of a client's `<open/>`. One allocation for
//! all of them instead of one each. No parsing: the values come unescaped from the checker.

/// The values of up to `N` attributes, each named by its position in a list of `N` names
/// that the owner keeps.
#[derive(Debug, Clone)]
pub(crate) struct Picked<const N: usize> {
    /// The values present, one after the other.
    values: String,
    /// Where each name's value is in `values`.
    spans: [Option<(u32, u32)>; N],
}

impl<const N: usize> Default for Picked<N> {
    fn default() -> Self {
        Picked { values: String::new(), spans: [None; N] }
    }
}

impl<const N: usize> Picked<N> {
    /// Where `name`'s value goes among `names`, if it is one of them.
    pub fn slot(names: &[&str; N], name: &str) -> Option<usize> {
        names.iter().position(|kept| *kept == name)
    }

    /// The values of `attrs` whose names are among `names` (others are ignored; a later value
    /// of the same name wins).
    pub fn new<'a>(names: &[&str; N], attrs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut values = [None; N];
        for (name, value) in attrs {
            if let Some(i) = Self::slot(names, name) {
                values[i] = Some(value);
            }
        }
        Self::from_slots(values)
    }

    /// The values by slot (see [`Self::slot`]), copied into one string made at their size.
    pub fn from_slots(values: [Option<&str>; N]) -> Self {
        let length = values.iter().flatten().map(|value| value.len()).sum();
        let mut picked = Picked { values: String::with_capacity(length), spans: [None; N] };
        for (span, value) in picked.spans.iter_mut().zip(values) {
            if let Some(value) = value {
                let start = picked.values.len() as u32;
                picked.values.push_str(value);
                // One start tag is at most a few hundred KiB: offsets fit in 32 bits.
                *span = Some((start, picked.values.len() as u32));
            }
        }
        picked
    }

    /// The value of the `i`th name, if the start tag had it.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.spans[i].map(|(start, end)| &self.values[start as usize..end as usize])
    }

    /// `type_name { name: value, ... }` for `Debug`.
    pub fn fmt_named(&self, type_name: &str, names: &[&str; N], f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct(type_name);
        for (i, name) in names.iter().enumerate() {
            debug.field(name, &self.get(i));
        }
        debug.finish()
    }
}

/// Equal when every name has the same value, however the values are laid out.
impl<const N: usize> PartialEq for Picked<N> {
    fn eq(&self, other: &Self) -> bool {
        (0..N).all(|i| self.get(i) == other.get(i))
    }
}

impl<const N: usize> Eq for Picked<N> {}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["a", "b", "c"];

    #[test]
    fn keeps_the_named_values_in_one_string_exactly_sized() {
        let picked = Picked::new(&NAMES, [("c", "3"), ("x", "ignored"), ("a", "one"), ("c", "three")]);
        assert_eq!((picked.get(0), picked.get(1), picked.get(2)), (Some("one"), None, Some("three")));
        // Only the values kept are copied: the replaced "3" is not.
        assert_eq!(picked.values.capacity(), "onethree".len());
        // Equality is by value, not layout.
        assert_eq!(picked, Picked::new(&NAMES, [("a", "one"), ("c", "three")]));
        assert_ne!(picked, Picked::new(&NAMES, [("a", "one"), ("c", "three"), ("b", "")]));
        assert_eq!(Picked::<3>::default(), Picked::new(&NAMES, [("x", "y")]));
    }
}
