//! Range requests (RFC 9110 §14): a client asks for part of a file.
//!
//! A download that broke off resumes where it stopped, and a video player
//! jumps to the middle, by asking for a byte range: `Range: bytes=1000-`
//! (from byte 1000 to the end), `bytes=0-99` (the first hundred), or
//! `bytes=-500` (the last five hundred). The answer is `206 Partial
//! Content` with a `Content-Range: bytes 1000-4999/5000` that says which
//! part of how much it is; a range that starts past the end is `416 Range
//! Not Satisfiable`, with `Content-Range: bytes */5000` to say how long
//! the file is. The server says it takes ranges with `Accept-Ranges: bytes`.
//!
//! A server may always ignore a `Range` header and send the whole file with
//! `200`, and this one does so for anything but one well-formed range:
//! several ranges would need a `multipart/byteranges` body, parts between
//! separators, where a file body here is one range of one open file, sent
//! straight from the disk (see [`super::FileRange`]).
//! Whether a range applies at all, when the file may have changed since the
//! client's first part, is for `If-Range` to say ([`super::conditional`]).

/// A single `bytes=` range against a file of `len` bytes: `None` to ignore
/// the header (malformed, or several ranges, which may be answered with the
/// whole file), `Some(Err)` when unsatisfiable (416), else first and last byte.
/// The unit is case-insensitive (RFC 9110 §14.1: `BYTES=0-1` is a range).
pub fn parse_range(header: &str, len: u64) -> Option<std::result::Result<(u64, u64), ()>> {
    let (unit, spec) = header.trim().split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let range = if first.is_empty() {
        let suffix = number(last)?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let first = number(first)?;
        let last = if last.is_empty() {
            u64::MAX
        } else {
            number(last)?
        };
        if last < first {
            return None;
        }
        if first >= len {
            return Some(Err(()));
        }
        (first, last.min(len - 1))
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-5000", 1000), Some(Ok((0, 999))));
        assert_eq!(parse_range("bytes=500-5000", 1000), Some(Ok((500, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=a-b", 1000), None);
        assert_eq!(parse_range("bytes=+1-2", 1000), None);
        assert_eq!(parse_range("bytes 0-1", 1000), None);
        // An empty file has no byte to start from.
        assert_eq!(parse_range("bytes=0-", 0), Some(Err(())));
        assert_eq!(parse_range("bytes=-1", 0), Some(Err(())));
    }

    #[test]
    fn the_range_unit_ignores_case() {
        for header in ["BYTES=0-1", "Bytes=0-1", "bYtEs=0-1"] {
            assert_eq!(parse_range(header, 1000), Some(Ok((0, 1))), "{header}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the header, a range that is answered lies inside
            /// the file and holds at least one byte.
            #[test]
            fn an_answered_range_lies_inside_the_file(
                header in "(bytes|BYTES|items)=[0-9]{0,4}-[0-9]{0,4}",
                len in 0u64..5000,
            ) {
                if let Some(Ok((first, last))) = parse_range(&header, len) {
                    prop_assert!(first <= last && last < len, "{header} of {len}: {first}-{last}");
                }
            }
        }
    }
}
