//! A vector whose first few entries live inline (private): the checker's stacks of open elements
//! and of a start tag's attributes, which for an ordinary stanza hold a handful of entries.
//!
//! Made per client message, a `Vec` cost a `malloc` and a `free` each (a tenth of checking a chat
//! stanza); these cost nothing until they outgrow their inline room, and then grow as a `Vec`
//! does (amortised constant time per push, whatever the input). No I/O, no parsing.

use std::ops::{Deref, DerefMut};

/// Up to `N` entries inline; once more have been pushed, all of them in `spill` until the next
/// [`InlineVec::clear`] (so an element nested around the boundary costs no copying back and
/// forth).
///
/// Invariant: when `spilled` is false the entries are `inline[..len]` and `spill` is empty; when
/// true they are `spill` and `len` is unused.
#[derive(Debug, Clone)]
pub(crate) struct InlineVec<T: Copy + Default, const N: usize> {
    inline: [T; N],
    len: usize,
    spilled: bool,
    spill: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Default for InlineVec<T, N> {
    fn default() -> Self {
        InlineVec { inline: [T::default(); N], len: 0, spilled: false, spill: Vec::new() }
    }
}

impl<T: Copy + Default, const N: usize> InlineVec<T, N> {
    /// Appends `value`.
    #[inline]
    pub fn push(&mut self, value: T) {
        if self.spilled {
            self.spill.push(value);
        } else if self.len < N {
            self.inline[self.len] = value;
            self.len += 1;
        } else {
            self.spill_over(value);
        }
    }

    /// Appends an entry and returns it to be written in place (holding some earlier value until
    /// then): a large `T` built by the caller and then copied in is read back from the stack
    /// while its fields' stores are still in flight, which stalls the load.
    #[inline]
    pub fn push_slot(&mut self) -> &mut T {
        if !self.spilled && self.len < N {
            self.len += 1;
            return &mut self.inline[self.len - 1];
        }
        self.push(T::default());
        let last = self.spill.len() - 1;
        &mut self.spill[last]
    }

    #[cold]
    #[inline(never)]
    fn spill_over(&mut self, value: T) {
        self.spill.extend_from_slice(&self.inline[..self.len]);
        self.spill.push(value);
        self.spilled = true;
    }

    /// Removes the last entry.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.spilled {
            return self.spill.pop();
        }
        self.len = self.len.checked_sub(1)?;
        Some(self.inline[self.len])
    }

    /// Removes everything, keeping the spilled allocation for reuse.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
        self.spilled = false;
        self.spill.clear();
    }

    /// Bytes allocated outside the inline room.
    pub fn heap_bytes(&self) -> usize {
        self.spill.capacity() * std::mem::size_of::<T>()
    }
}

impl<T: Copy + Default, const N: usize> Deref for InlineVec<T, N> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        if self.spilled {
            &self.spill
        } else {
            &self.inline[..self.len]
        }
    }
}

impl<T: Copy + Default, const N: usize> DerefMut for InlineVec<T, N> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        if self.spilled {
            &mut self.spill
        } else {
            &mut self.inline[..self.len]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_past_the_inline_room_and_back() {
        let mut v: InlineVec<u32, 3> = InlineVec::default();
        let mut model = Vec::new();
        // Up and down across the boundary, twice, compared with a Vec at every step.
        for round in 0..2u32 {
            for i in 0..7 {
                // Every other entry written through its slot, on both sides of the boundary.
                if i % 2 == 0 {
                    v.push(round * 100 + i);
                } else {
                    *v.push_slot() = round * 100 + i;
                }
                model.push(round * 100 + i);
                assert_eq!(&v[..], &model[..]);
            }
            for _ in 0..5 {
                assert_eq!(v.pop(), model.pop());
                assert_eq!(&v[..], &model[..]);
            }
            v[0] = 42;
            model[0] = 42;
            assert_eq!(&v[..], &model[..]);
        }
        v.clear();
        assert!(v.is_empty() && v.pop().is_none());
        v.push(7);
        assert_eq!(&v[..], &[7]);
    }
}
