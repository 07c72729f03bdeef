//! The PROXY protocol: the original client's 5-tuple, carried past a load
//! balancer.
//!
//! Behind a TCP load balancer (HAProxy, an AWS NLB, ...), every connection
//! the server accepts comes from the balancer: its remote address is the
//! balancer's, and the client's own address and ephemeral port are lost.
//! The PROXY protocol puts them back. Before any byte of the client's own,
//! the balancer sends one header naming the connection it received: source
//! address and port, destination address and port. Version 1 is a line of
//! text (`PROXY TCP4 203.0.113.7 198.51.100.1 54321 80\r\n`, at most 107
//! bytes); version 2 is binary (a 12-byte signature, version and command,
//! family, a length, the addresses, then optional TLVs).
//!
//! `serve --proxy-protocol` expects the header on every connection of the
//! listener; it is never guessed from the bytes, since a client that could
//! choose whether to send one could claim any address. Parsing is done by
//! the `ppp` crate, which takes a byte slice and says when it needs more
//! bytes, which is what a non-blocking reader needs: the header may arrive
//! in pieces, and bytes of the request may follow it in the same read.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use ppp::{v1, v2, HeaderResult, PartialResult};

/// The most bytes a header may take: 107 for version 1 (its own limit),
/// and for version 2 the 16-byte fixed part plus addresses and TLVs. A
/// balancer's TLVs (ALPN, authority, unique id, TLS details) fit easily;
/// the limit keeps a slow or hostile peer from making the server buffer
/// the 64 KiB the length field could announce.
pub const MAX_HEADER: usize = 4096;

/// The longest version 1 line, CRLF included.
const V1_MAX: usize = 107;

/// The 12 bytes every version 2 header begins with.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The client's connection, as the balancer received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The client's address and ephemeral port.
    pub source: SocketAddr,
    /// The address and port the client connected to (the balancer's).
    pub destination: SocketAddr,
}

/// What the bytes so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Not all of the header is here yet.
    Incomplete,
    /// The header took this many bytes; what follows is the client's own.
    /// `None` when the header carries no addresses: version 2's LOCAL
    /// command (the balancer's own health check) or version 1's `UNKNOWN`.
    Complete(usize, Option<Origin>),
    /// Not a PROXY header, or one that is broken or too long: the
    /// connection is closed.
    Invalid(&'static str),
}

/// Parses the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Header {
    if !could_be_header(buf) {
        return Header::Invalid("the connection did not start with a PROXY protocol header");
    }
    // Version 1 is one line: parse it once its CRLF is here (the parser
    // cannot always tell a line cut short from a broken one).
    let buf = if buf.starts_with(b"P") {
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => &buf[..=end],
            None if buf.len() < V1_MAX => return Header::Incomplete,
            None => return Header::Invalid("a PROXY protocol v1 line longer than 107 bytes"),
        }
    } else {
        buf
    };
    let header = match HeaderResult::parse(buf) {
        result if result.is_incomplete() => Header::Incomplete,
        HeaderResult::V1(Ok(h)) => Header::Complete(h.header.len(), v1_origin(&h.addresses)),
        HeaderResult::V2(Ok(h)) => Header::Complete(h.len(), v2_origin(&h)),
        HeaderResult::V1(Err(_)) => Header::Invalid("a malformed PROXY protocol v1 header"),
        HeaderResult::V2(Err(_)) => Header::Invalid("a malformed PROXY protocol v2 header"),
    };
    match header {
        Header::Incomplete if buf.len() >= MAX_HEADER => {
            Header::Invalid("a PROXY protocol header longer than 4096 bytes")
        }
        Header::Complete(len, _) if len > MAX_HEADER => {
            Header::Invalid("a PROXY protocol header longer than 4096 bytes")
        }
        other => other,
    }
}

/// Whether `buf` starts like one of the two versions (or is a prefix of
/// their beginnings): anything else is refused at its first byte, rather
/// than waited on.
fn could_be_header(buf: &[u8]) -> bool {
    let starts = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    starts(b"PROXY ") || starts(V2_SIGNATURE)
}

fn v1_origin(addresses: &v1::Addresses) -> Option<Origin> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(Origin {
            source: SocketAddrV4::new(a.source_address, a.source_port).into(),
            destination: SocketAddrV4::new(a.destination_address, a.destination_port).into(),
        }),
        v1::Addresses::Tcp6(a) => Some(Origin {
            source: SocketAddrV6::new(a.source_address, a.source_port, 0, 0).into(),
            destination: SocketAddrV6::new(a.destination_address, a.destination_port, 0, 0).into(),
        }),
        v1::Addresses::Unknown => None,
    }
}

fn v2_origin(header: &v2::Header<'_>) -> Option<Origin> {
    if header.command == v2::Command::Local {
        return None; // the balancer speaking for itself (a health check)
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Some(Origin {
            source: SocketAddrV4::new(a.source_address, a.source_port).into(),
            destination: SocketAddrV4::new(a.destination_address, a.destination_port).into(),
        }),
        v2::Addresses::IPv6(a) => Some(Origin {
            source: SocketAddrV6::new(a.source_address, a.source_port, 0, 0).into(),
            destination: SocketAddrV6::new(a.destination_address, a.destination_port, 0, 0).into(),
        }),
        // UNIX sockets and unspecified families carry no 5-tuple.
        v2::Addresses::Unix(_) | v2::Addresses::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(src: &str, dst: &str) -> Option<Origin> {
        Some(Origin {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        })
    }

    /// A version 2 PROXY header for TCP over IPv4, with `tlvs` appended.
    pub(crate) fn v2_header(
        src: SocketAddrV4,
        dst: SocketAddrV4,
        local: bool,
        tlvs: &[u8],
    ) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(if local { 0x20 } else { 0x21 });
        h.push(0x11); // IPv4, stream
        h.extend_from_slice(&(12 + tlvs.len() as u16).to_be_bytes());
        h.extend_from_slice(&src.ip().octets());
        h.extend_from_slice(&dst.ip().octets());
        h.extend_from_slice(&src.port().to_be_bytes());
        h.extend_from_slice(&dst.port().to_be_bytes());
        h.extend_from_slice(tlvs);
        h
    }

    #[test]
    fn version_1_gives_the_client_and_where_the_request_starts() {
        let line = b"PROXY TCP4 203.0.113.7 198.51.100.1 54321 80\r\n";
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&bytes),
            Header::Complete(line.len(), origin("203.0.113.7:54321", "198.51.100.1:80"))
        );
        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 54321 443\r\n";
        assert_eq!(
            parse(six),
            Header::Complete(
                six.len(),
                origin("[2001:db8::7]:54321", "[2001:db8::1]:443")
            )
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Header::Complete(15, None));
    }

    #[test]
    fn a_header_split_anywhere_waits_for_the_rest() {
        let line = b"PROXY TCP4 203.0.113.7 198.51.100.1 54321 80\r\n";
        let v2 = v2_header(
            "203.0.113.7:54321".parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
            false,
            &[],
        );
        for whole in [&line[..], &v2] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut]), Header::Incomplete, "cut at {cut}");
            }
            assert!(matches!(parse(whole), Header::Complete(n, Some(_)) if n == whole.len()));
        }
    }

    #[test]
    fn version_2_honours_its_length_skips_tlvs_and_accepts_local() {
        let src = "203.0.113.7:54321".parse().unwrap();
        let dst = "198.51.100.1:80".parse().unwrap();
        // A NOOP TLV (type 0x04) and an unknown one (0xE0): both skipped.
        let tlvs = [0x04, 0x00, 0x02, 0, 0, 0xE0, 0x00, 0x01, 7];
        let header = v2_header(src, dst, false, &tlvs);
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&bytes),
            Header::Complete(header.len(), origin("203.0.113.7:54321", "198.51.100.1:80"))
        );
        let local = v2_header(src, dst, true, &[]);
        assert_eq!(parse(&local), Header::Complete(local.len(), None));
    }

    #[test]
    fn anything_else_is_refused_at_once() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"G",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n",
            b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c", // version 3
        ] {
            assert!(
                matches!(parse(bad), Header::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A version 1 line that never ends is refused at 107 bytes.
        let long = format!("PROXY TCP4 {}", "1".repeat(200));
        assert!(matches!(parse(long.as_bytes()), Header::Invalid(_)));
        // A version 2 header announcing more than the limit is refused
        // once the limit is reached, not after 64 KiB.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        big.resize(MAX_HEADER, 0);
        assert!(matches!(parse(&big), Header::Invalid(_)));
    }
}
