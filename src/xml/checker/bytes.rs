//! The byte-level pieces of the scanner (private to [`super`]): which bytes a run of text, an
//! attribute value or a name may hold, the eight-byte skip over plain text, and the checks of a
//! name as a `QName`. Pure functions and tables over bytes; nothing here knows about elements,
//! namespaces or the scanner's state.

use super::super::error::XmlError;
use super::super::lexical::is_qname;

/// Bytes that never stop a scan of character data: everything but `<`, `&`, `>` (which may end
/// `]]>`), the C0 controls other than TAB, LF and CR, and `0xEF` (which may start U+FFFE or
/// U+FFFF). A `&str` holds no other character XML forbids.
pub(super) const TEXT_PLAIN: [bool; 256] = byte_class(b"<&>");
/// The same for attribute values, which also stop at quotes (either: the scan compares), and
/// at TAB, LF and CR (attribute-value normalisation makes the value differ from its bytes).
pub(super) const VALUE_PLAIN: [bool; 256] = byte_class(b"<&\"'\t\n\r");
/// The same for CDATA sections, which stop only at `>` (which may end `]]>`).
pub(super) const CDATA_PLAIN: [bool; 256] = byte_class(b">");

const fn byte_class(stops: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = !(b < 0x20 && b != 0x09 && b != 0x0A && b != 0x0D) && b != 0xEF;
        b += 1;
    }
    let mut i = 0;
    while i < stops.len() {
        table[stops[i] as usize] = false;
        i += 1;
    }
    table
}

/// Bytes that may be part of a name (validated as a whole by [`is_qname`] at its end): ASCII
/// letters, digits, `-`, `.`, `_`, `:`, and every byte of a non-ASCII character.
pub(super) const NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':') || c >= 0x80;
        b += 1;
    }
    table
};

/// Bytes that may be part of a reference's name (`&name;`, `&#10;`, `&#x1F;`).
pub(super) const REFERENCE_BYTE: [bool; 256] = {
    let mut table = NAME_BYTE;
    table[b'#' as usize] = true;
    table
};

pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes that continue a name and need no further look: ASCII letters, digits, `-`, `.`, `_`.
pub(super) const NAME_PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
        b += 1;
    }
    table
};

/// Whether `name` (bytes [`NAME_BYTE`] accepts) is a `QName`, and if so the offset of its `:`
/// (0 if none): the ASCII case on the bytes, the rest by [`is_qname`].
#[inline]
pub(super) fn qname_colon(name: &[u8]) -> Option<usize> {
    let ascii_start = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let non_ascii = |name: &[u8]| is_qname(name).then(|| name.iter().position(|&b| b == b':').unwrap_or(0));
    match name.first() {
        Some(&b) if ascii_start(b) => {}
        Some(&b) if b >= 0x80 => return non_ascii(name),
        _ => return None,
    }
    let mut colon = 0;
    let mut i = 1;
    loop {
        while i < name.len() && NAME_PLAIN[name[i] as usize] {
            i += 1;
        }
        let Some(&b) = name.get(i) else { break };
        if b >= 0x80 {
            return non_ascii(name);
        }
        if b == b':' {
            if colon != 0 {
                return None;
            }
            colon = i;
        }
        i += 1;
    }
    (colon == 0 || name.get(colon + 1).is_some_and(|&b| ascii_start(b))).then_some(colon)
}

/// A digest of a name (its length and its first and last bytes) that tells most different
/// attribute names apart without comparing them.
#[inline]
pub(super) fn name_key(name: &[u8]) -> u32 {
    let (first, last) = (name.first().copied().unwrap_or(0), name.last().copied().unwrap_or(0));
    ((name.len() as u32) << 16) | (u32::from(first) << 8) | u32::from(last)
}

/// The bytes [`skip_plain_ascii`] stops at in character data, as `(mask, target)` pairs: a
/// byte `b` stops it when `b | mask == target`. `<` and `>` are one pair (they differ in one
/// bit), `&` the other.
pub(super) const TEXT_STOPS: [(u8, u8); 2] = [(0x02, b'>'), (0, b'&')];
/// The same in attribute values: `"`, `#`, `&` and `'` are one pair (`#` needlessly: the
/// byte-by-byte scan then passes it), `<` the other.
pub(super) const VALUE_STOPS: [(u8, u8); 2] = [(0x05, b'\''), (0, b'<')];

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Reads `unit` from `j` eight bytes at a time (as a little-endian `u64`) while `flags` of a
/// block, the high bit of each byte to stop at, is zero; returns the offset of the lowest
/// flagged byte, or of a last block too short to read whole (for the byte-by-byte scan).
/// `flags` may flag a byte wrongly only above a byte it flags rightly.
#[inline(always)]
fn skip_blocks(unit: &[u8], mut j: usize, flags: impl Fn(u64) -> u64) -> usize {
    while let Some(block) = unit.get(j..j + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(block);
        let stop = flags(u64::from_le_bytes(bytes)) & HIGHS;
        if stop != 0 {
            return j + (stop.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    j
}

/// Skips, eight bytes at a time, a run of printable ASCII holding no byte that `stops` names;
/// returns where it stopped: at the first byte that is something else, or before a last
/// block too short to read whole (for the byte-by-byte scan to look at).
#[inline(always)]
pub(super) fn skip_plain_ascii<const STOPS: usize>(unit: &[u8], j: usize, stops: &[(u8, u8); STOPS]) -> usize {
    skip_blocks(unit, j, |x| {
        // One mask whose high bits say "stop here": a byte from 0x80 up sets its own (`x`);
        // when there is none, every byte is below 0x80, and a byte's high bit in `x - 0x20..`
        // or in `((x | mask) ^ target) - 0x01..` is set exactly when that byte (or one below
        // it, which is then flagged too) is below 0x20 or is a stop. So the mask is zero
        // exactly when the block is printable ASCII without a stop. A byte is flagged wrongly
        // only by a borrow from the byte below it, which is then flagged itself.
        let mut flags = x | x.wrapping_sub(ONES * 0x20);
        for &(mask, target) in stops {
            flags |= ((x | (ONES * u64::from(mask))) ^ (ONES * u64::from(target))).wrapping_sub(ONES);
        }
        flags
    })
}

/// What [`name_end`] knows of each byte: 0 ends a name, [`NAME_PLAIN`] bytes are 1, the other
/// name bytes (`:` and non-ASCII) 3.
pub(super) const NAME_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = if NAME_PLAIN[b] {
            1
        } else if NAME_BYTE[b] {
            3
        } else {
            0
        };
        b += 1;
    }
    table
};

/// The end of the name starting at `from` (the first byte that cannot be part of one), and
/// whether a byte on the way was other than [`NAME_PLAIN`].
#[inline(always)]
pub(super) fn name_end(unit: &[u8], from: usize) -> (usize, bool) {
    let (mut j, mut seen) = (skip_lowercase(unit, from), 0);
    while let Some(&b) = unit.get(j) {
        let class = NAME_CLASS[b as usize];
        if class == 0 {
            break;
        }
        seen |= class;
        j += 1;
    }
    (j, seen & 2 != 0)
}

/// Skips, eight bytes at a time, the lowercase ASCII letters that most names are made of;
/// returns the offset of the first other byte (or of the last block too short to read whole),
/// from which a byte-by-byte scan goes on.
#[inline(always)]
pub(super) fn skip_lowercase(unit: &[u8], j: usize) -> usize {
    skip_blocks(unit, j, |x| {
        // A byte's high bit in `x + (0x80 - 'a')..` is set when it is at least `a`, in
        // `x + (0x80 - '{')..` when it is past `z` (for bytes below 0x80, which carry into no
        // other; a byte from 0x80 up is not a letter, and what it carries into comes after it).
        let at_least_a = x.wrapping_add(ONES * u64::from(0x80 - b'a'));
        let past_z = x.wrapping_add(ONES * u64::from(0x80 - b'{'));
        !(at_least_a & !past_z & !x)
    })
}

/// [`qname_colon`], with the answer at once for a `plain` name (read whole, [`NAME_PLAIN`]
/// bytes only): a `QName` without a colon exactly when it starts with a letter or `_`.
#[inline(always)]
pub(super) fn checked_qname(name: &[u8], plain: bool) -> Option<usize> {
    if plain {
        name.first().is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_').then_some(0)
    } else {
        qname_colon(name)
    }
}

pub(super) fn forbidden_char() -> XmlError {
    XmlError::NotWellFormed("character not allowed in XML")
}

/// `0xEF` at `at` (with two more bytes after it): U+FFFE and U+FFFF are refused.
pub(super) fn check_ef(unit: &[u8], at: usize) -> Result<(), XmlError> {
    if unit[at + 1] == 0xBF && matches!(unit[at + 2], 0xBE | 0xBF) {
        return Err(forbidden_char());
    }
    Ok(())
}
