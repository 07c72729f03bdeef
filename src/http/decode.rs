//! Chunked bodies (`Transfer-Encoding: chunked`), decoded byte by byte.
//!
//! A chunked body is a series of `SIZE[;ext]\r\n DATA \r\n` pieces ended by
//! a zero size and optional trailer lines. The decoder is a small state
//! machine that takes the body in whatever pieces it arrives, remembers
//! where it stopped, and says when the body is over: the same shape as
//! hyper's `decode.rs`. None of the routes reads a body, so it only counts
//! and discards, but it must find the body's end to the byte, or the next
//! request would start in the wrong place.

use super::parse::{Limits, Reject};
use super::response::Status;

/// A strict decoder for `Transfer-Encoding: chunked` bodies that only
/// counts and discards: none of the routes reads a body.
///
/// It is written by hand rather than with `httparse::parse_chunk_size`
/// because that function accepts an empty size line, and a lenient chunk
/// parser in front of a strict one is exactly how smuggling happens.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// The size of the chunk whose size line is being read.
    size: u64,
    /// Hex digits seen on this size line.
    digits: u8,
    /// Bytes of body seen so far, bounded by `Limits::max_body`.
    total: u64,
    /// Bytes of the current line (size line with extensions, or trailer).
    line: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// In a chunk extension (`;name=value`), skipped up to CR.
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Longest chunk-size line or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;

impl ChunkedDecoder {
    /// Consumes as much of `input` as belongs to the body. Returns the bytes
    /// used and whether the body is complete.
    pub fn decode(&mut self, input: &[u8], limits: &Limits) -> Result<(usize, bool), Reject> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits == 16 {
                            return Err(Reject::bad("chunk size overflows"));
                        }
                        self.digits += 1;
                        self.size = self.size * 16 + u64::from(hex_value(b));
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::Extension,
                    b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                    _ => return Err(Reject::bad("invalid chunk size")),
                },
                ChunkState::Extension => match b {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' | 0 => return Err(Reject::bad("invalid chunk extension")),
                    _ => {}
                },
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(Reject::bad("chunk size line without CRLF"));
                    }
                    self.total = self.total.saturating_add(self.size);
                    if self.total > limits.max_body {
                        return Err(Reject::new(
                            Status::PAYLOAD_TOO_LARGE,
                            "request body larger than the limit",
                        ));
                    }
                    self.state = if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data(self.size)
                    };
                    self.size = 0;
                    self.digits = 0;
                    self.line = 0;
                }
                ChunkState::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                    i += take;
                    continue;
                }
                ChunkState::DataCr if b == b'\r' => self.state = ChunkState::DataLf,
                ChunkState::DataLf if b == b'\n' => self.state = ChunkState::Size,
                ChunkState::DataCr | ChunkState::DataLf => {
                    return Err(Reject::bad("chunk data longer than its size"))
                }
                ChunkState::TrailerStart => match b {
                    b'\r' => self.state = ChunkState::EndLf,
                    b'\n' => return Err(Reject::bad("bare LF in chunked trailer")),
                    _ => self.state = ChunkState::Trailer,
                },
                ChunkState::Trailer => match b {
                    b'\r' => self.state = ChunkState::TrailerLf,
                    b'\n' | 0 => return Err(Reject::bad("invalid chunked trailer")),
                    _ => {}
                },
                ChunkState::TrailerLf if b == b'\n' => {
                    self.line = 0;
                    self.state = ChunkState::TrailerStart;
                }
                ChunkState::TrailerLf => return Err(Reject::bad("invalid chunked trailer")),
                ChunkState::EndLf if b == b'\n' => {
                    self.state = ChunkState::Done;
                    return Ok((i + 1, true));
                }
                ChunkState::EndLf => return Err(Reject::bad("chunked body not ended by CRLF")),
                ChunkState::Done => return Ok((i, true)),
            }
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err(Reject::bad("chunk line too long"));
            }
            i += 1;
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(input: &[u8]) -> Result<(usize, bool), Reject> {
        ChunkedDecoder::default().decode(input, &Limits::default())
    }

    #[test]
    fn chunked_bodies_decode_strictly() {
        assert_eq!(chunked(b"5\r\nhello\r\n0\r\n\r\nNEXT").unwrap(), (15, true));
        assert_eq!(
            chunked(b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n").unwrap(),
            (33, true)
        );
        assert_eq!(chunked(b"5\r\nhel").unwrap(), (6, false));
        for bad in [
            &b"\r\n"[..],
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\n",
        ] {
            assert!(chunked(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let big = format!("{:x}\r\n", 2 * 1024 * 1024);
        assert_eq!(chunked(big.as_bytes()).unwrap_err().status.code, 413);
    }

    #[test]
    fn chunked_decodes_the_same_at_any_split() {
        let body = b"5\r\nhello\r\n3;x\r\nabc\r\n0\r\nT: v\r\n\r\n";
        for split in 0..body.len() {
            let mut d = ChunkedDecoder::default();
            let (a, done_a) = d.decode(&body[..split], &Limits::default()).unwrap();
            assert_eq!(a, split);
            assert!(!done_a);
            let (b, done_b) = d.decode(&body[split..], &Limits::default()).unwrap();
            assert_eq!(a + b, body.len());
            assert!(done_b);
        }
    }
}
