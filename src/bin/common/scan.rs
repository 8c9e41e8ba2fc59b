//! Finding top-level elements in the benchmark's own XMPP byte streams, shared by the load
//! generator and the fake upstream. Counts tags only: good for the well-behaved stanzas the
//! benchmark sends (no comments, CDATA, or `>` inside attribute values), not a parser.

/// The first occurrence of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// What the start of the pending input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// `skip` bytes of whitespace, then a complete element of `len` bytes.
    Element { skip: usize, len: usize },
    /// An end tag at depth 0: the end of the stream.
    StreamEnd,
    /// Not a complete element yet.
    Incomplete,
}

/// Finds the first complete top-level element by counting tags.
pub fn scan(bytes: &[u8]) -> Scan {
    let skip = bytes.iter().take_while(|byte| byte.is_ascii_whitespace()).count();
    let element = &bytes[skip..];
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(open) = element[at..].iter().position(|&byte| byte == b'<') {
        let tag_start = at + open;
        let Some(close) = element[tag_start..].iter().position(|&byte| byte == b'>') else {
            return Scan::Incomplete;
        };
        let tag_end = tag_start + close;
        let tag = &element[tag_start + 1..tag_end];
        at = tag_end + 1;
        if tag.first() == Some(&b'/') {
            if depth == 0 {
                return Scan::StreamEnd;
            }
            depth -= 1;
        } else if tag.last() != Some(&b'/') {
            depth += 1;
        }
        if depth == 0 {
            return Scan::Element { skip, len: at };
        }
    }
    Scan::Incomplete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_elements_and_the_stream_end() {
        assert_eq!(scan(b" <a/><b>"), Scan::Element { skip: 1, len: 4 });
        assert_eq!(scan(b"<m to='x'><body>hi</body></m>rest"), Scan::Element { skip: 0, len: 29 });
        assert_eq!(scan(b"<m><body>hi</body>"), Scan::Incomplete);
        assert_eq!(scan(b"<m"), Scan::Incomplete);
        assert_eq!(scan(b"\n</stream:stream>"), Scan::StreamEnd);
    }
}
