//! What `fivetuple connect` was asked to do, checked before any socket
//! opens: the target resolved, the payload ready, the defaults of the mode
//! filled in, and the two things the machine can refuse up front (open
//! files for `-n` sockets, a `--source` address it does not have) asked
//! about once, so that the run itself meets only what the network says.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Once;
use std::time::Duration;

use crate::error::{Error, Result};

use super::datagram;
use super::failure::Failure;

/// The three ways the story's client talks to a server (its `-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connect, send the payload, hold the connection, print its 5-tuple.
    Tcp,
    /// Send the payload as one datagram from each socket and wait for the
    /// answer: `fivetuple serve --udp` says what it saw.
    Udp,
    /// Connect and ask `GET /_/whoami`: the server's view of the connection.
    Http,
}

impl Mode {
    /// How long sockets stay open once all are up, unless `--hold` says:
    /// a plain TCP connection is held a few seconds (long enough to look
    /// at it with `conns`, as the story's client did); a question with an
    /// answer ends when the answers are in.
    pub fn default_hold(self) -> Duration {
        match self {
            Mode::Tcp => Duration::from_secs(5),
            Mode::Udp | Mode::Http => Duration::ZERO,
        }
    }

    /// How long to wait for a connection (TCP; twice that for the answer
    /// with `--http`) or for a UDP answer, unless `--timeout` says. A lost
    /// datagram is never resent, so UDP waits less.
    pub fn default_timeout(self) -> Duration {
        match self {
            Mode::Tcp | Mode::Http => Duration::from_secs(5),
            Mode::Udp => Duration::from_secs(2),
        }
    }

    /// The protocol, as the first element of the tuple is written.
    pub fn proto(self) -> &'static str {
        match self {
            Mode::Udp => "udp",
            Mode::Tcp | Mode::Http => "tcp",
        }
    }
}

/// What `fivetuple connect` is asked for, in plain values (the binary reads
/// them from the command line).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server, as `host:port` (`[::1]:500` for IPv6).
    pub target: String,
    pub mode: Mode,
    /// Bytes to send once connected (TCP) or as the datagram (UDP). With
    /// [`Mode::Http`] the request is made here and this is ignored.
    pub payload: Vec<u8>,
    /// Sockets to open, all held at once.
    pub count: usize,
    /// Local addresses to send from, used in turn.
    pub sources: Vec<IpAddr>,
    /// How long to keep the sockets open once all are up
    /// ([`Mode::default_hold`] is the usual value).
    pub hold: Duration,
    /// How long to wait for a connection or an answer; `None` waits until
    /// Ctrl-C ([`Mode::default_timeout`] is the usual value).
    pub timeout: Option<Duration>,
    /// Sockets in their first step (the handshake, or awaiting a UDP
    /// answer) at once, at most.
    pub concurrency: usize,
}

/// The largest UDP payload: 65,535 bytes less the 8-byte UDP header, and
/// for IPv4 less the 20-byte IP header too (IPv6's header is not counted
/// in its payload length).
pub fn max_datagram(target: SocketAddr) -> usize {
    if target.is_ipv4() {
        65_507
    } else {
        65_527
    }
}

/// The options, checked and resolved.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub mode: Mode,
    /// The server's addresses, in the resolver's order; `localhost` is
    /// often `::1` and then `127.0.0.1`. See [`Targets`].
    pub targets: Vec<SocketAddr>,
    pub target_text: String,
    /// What each socket sends: the payload, and with [`Mode::Udp`] the
    /// padding after it.
    pub payload: Vec<u8>,
    /// UDP: the zero bytes at the end of `payload` (see `datagram::padded`).
    pub padding: usize,
    pub count: usize,
    pub sources: Vec<IpAddr>,
    pub hold: Duration,
    pub timeout: Option<Duration>,
    pub concurrency: usize,
}

impl Plan {
    pub fn new(opts: &ConnectOptions) -> Result<Plan> {
        let targets = resolve(&opts.target, opts.sources.first())?;
        let target = targets[0];
        if opts.count == 0 {
            return Err(Error::usage("-n takes a number of sockets, 1 or more"));
        }
        if let Some(bad) = opts
            .sources
            .iter()
            .find(|s| s.is_ipv4() != target.is_ipv4())
        {
            return Err(Error::usage(format!(
                "--source {bad} and {target} are not the same IP version"
            )));
        }
        let payload = match opts.mode {
            Mode::Http => format!(
                "GET /_/whoami HTTP/1.1\r\nHost: {}\r\nUser-Agent: fivetuple\r\n\r\n",
                opts.target
            )
            .into_bytes(),
            Mode::Tcp | Mode::Udp => opts.payload.clone(),
        };
        let largest = targets.iter().map(|&t| max_datagram(t)).min().unwrap_or(0);
        if opts.mode == Mode::Udp && payload.len() > largest {
            return Err(Error::usage(format!(
                "-m udp sends the payload as one datagram, and {} bytes do not fit in one \
                 (at most {largest} towards {target})",
                payload.len()
            )));
        }
        check_fd_limit(opts.count)?;
        for &source in &opts.sources {
            check_source(source)?;
        }
        let (payload, padding) = match opts.mode {
            Mode::Udp => {
                let datagram = datagram::padded(&payload);
                let padding = datagram.len() - payload.len();
                (datagram, padding)
            }
            Mode::Tcp | Mode::Http => (payload, 0),
        };
        Ok(Plan {
            mode: opts.mode,
            targets,
            target_text: opts.target.clone(),
            payload,
            padding,
            count: opts.count,
            sources: opts.sources.clone(),
            hold: opts.hold,
            timeout: opts.timeout,
            concurrency: opts.concurrency.max(1),
        })
    }

    /// The local address the `n`th socket is sent from, if any.
    pub fn source(&self, n: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[n % self.sources.len()])
    }
}

/// Which of the target's addresses sockets go to.
///
/// A name can stand for several addresses, and a server listening on
/// `0.0.0.0` refuses `localhost`'s `::1`: so while a name's first
/// addresses are refused, one socket at a time tries the next, as a browser
/// would; the first that gets through (or the last address) settles it for
/// all.
#[derive(Debug)]
pub(super) struct Targets {
    addrs: Vec<SocketAddr>,
    current: usize,
    settled: bool,
}

impl Targets {
    pub fn new(addrs: Vec<SocketAddr>) -> Targets {
        Targets {
            settled: addrs.len() == 1,
            addrs,
            current: 0,
        }
    }

    pub fn current(&self) -> SocketAddr {
        self.addrs[self.current]
    }

    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// A socket got through to the current address: stay with it.
    pub fn settle(&mut self) {
        self.settled = true;
    }

    /// After an attempt at the current address failed with `failure`:
    /// true (and the next address chosen) when it is worth trying again
    /// there.
    pub fn try_next(&mut self, failure: &Failure) -> bool {
        let worth_another = matches!(
            failure,
            Failure::Refused
                | Failure::PortUnreachable
                | Failure::Unreachable
                | Failure::NotLocal
                | Failure::Other(_)
        );
        if self.settled || !worth_another || self.current + 1 >= self.addrs.len() {
            self.settled = true;
            return false;
        }
        log::info!(
            "{}: {}; trying {}",
            self.addrs[self.current],
            failure.describe(),
            self.addrs[self.current + 1]
        );
        self.current += 1;
        true
    }
}

/// `host:port` to its addresses, only those of the family of `--source`
/// when one is given (all of them if none is of that family: the caller
/// then says the versions differ).
pub(super) fn resolve(target: &str, source: Option<&IpAddr>) -> Result<Vec<SocketAddr>> {
    check_shape(target)?;
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| {
            let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
            Error::usage(format!(
                "cannot resolve the host name {host:?}: {e}; check its spelling, or give an \
                 address (127.0.0.1:500, [::1]:500)"
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::usage(format!("{target:?} resolves to no address")));
    }
    let wanted_v4 = source.map(IpAddr::is_ipv4);
    let same_family: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| wanted_v4.is_none_or(|v4| a.is_ipv4() == v4))
        .collect();
    Ok(if same_family.is_empty() {
        addrs
    } else {
        same_family
    })
}

/// The slips in a HOST:PORT that the resolver would only call "invalid
/// socket address", or blame on name resolution, each with its fix. The
/// shape is checked before any name is looked up.
fn check_shape(target: &str) -> Result<()> {
    let wrong = |why: String| Err(Error::usage(why));
    if target.is_empty() {
        return wrong("connect needs a target, HOST:PORT: localhost:500, say".into());
    }
    // `18501`: a port, with no host to find it on.
    if target.parse::<u16>().is_ok() {
        return wrong(format!(
            "{target} is a port with no host; give both as HOST:PORT: localhost:{target} is this machine"
        ));
    }
    // `:18501`: `serve` takes it (every address), but a client has to name
    // the one machine it wants to reach.
    if let Some(port) = target
        .strip_prefix(':')
        .filter(|p| p.parse::<u16>().is_ok())
    {
        return wrong(format!(
            "{target} has no host: a client must say which machine to reach; \
             localhost:{port} is this one"
        ));
    }
    // `::1`, `fe80::1`, `::1:500`: without brackets the port cannot be told
    // from the address, and the whole reads as one address with no port.
    if target.parse::<std::net::Ipv6Addr>().is_ok() {
        return wrong(format!(
            "{target} reads as an IPv6 address with no port; put the address in brackets \
             and the port after it: [::1]:500"
        ));
    }
    let bracketed = target.starts_with('[') && target.ends_with(']');
    match target.rsplit_once(':') {
        Some((_, port)) if !bracketed => match port.parse::<u16>() {
            Ok(0) => wrong(format!(
                "{target}: port 0 is not a port a server can listen on; give the server's port"
            )),
            Ok(_) => Ok(()),
            Err(_) => wrong(format!(
                "{target}: {port:?} is not a port; HOST:PORT takes a port from 1 to 65535"
            )),
        },
        _ => wrong(format!(
            "{target} has no port; give it as HOST:PORT: {target}:500, say"
        )),
    }
}

/// `\r`, `\n`, `\t`, `\\`, `\0` and `\xNN` in a payload typed on the command line.
pub fn unescape(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let value = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::usage("\\x in --payload takes two hex digits"))?;
                out.push(value);
            }
            other => {
                return Err(Error::usage(format!(
                    "unknown escape \\{} in --payload (known: \\r \\n \\t \\0 \\\\ \\xNN)",
                    other.map(char::from).unwrap_or(' ')
                )))
            }
        }
    }
    Ok(out)
}

/// A `--source` address must be one of this machine's: a packet can only
/// leave from an address the machine has. Checked once, before any socket,
/// with the same bind each socket does; a failure here is the machine
/// saying no (exit code 1), not a typing mistake.
fn check_source(source: IpAddr) -> Result<()> {
    let probe = socket2::Socket::new(
        socket2::Domain::for_address(SocketAddr::new(source, 0)),
        socket2::Type::STREAM.cloexec(),
        None,
    )
    .map_err(|e| Error::io(format!("--source {source}: creating a socket"), e))?;
    if source.is_ipv4() {
        set_bind_address_no_port(&probe);
    }
    match probe.bind(&SocketAddr::new(source, 0).into()) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
            let loopback = if source.is_ipv4() {
                "any of 127.0.0.0/8 is this machine"
            } else {
                "::1 is this machine"
            };
            Err(Error::explained(
                format!(
                    "--source {source} is not an address of this machine, so nothing can \
                     leave from it (bind: {e}); use one that `ip addr` lists ({loopback})"
                ),
                e,
            ))
        }
        // Other refusals (no port left, say) are the story itself: each
        // socket meets them and reports them in its own line.
        _ => Ok(()),
    }
}

/// Every socket is a file descriptor: say so before starting, not at 1,021.
fn check_fd_limit(count: usize) -> Result<()> {
    let limit = crate::listener::raise_fd_limit().unwrap_or(1024);
    let needed = count as u64 + 16;
    if needed > limit {
        return Err(Error::usage(format!(
            "-n {count} needs {needed} open files, but this process may open {limit}; \
             lower -n, or raise the hard limit (ulimit -Hn, /etc/security/limits.conf) first"
        )));
    }
    Ok(())
}

/// Lets `bind` leave the port to `connect`. Without it, binding a
/// `--source` address picks the port before the destination is known, and
/// each port is then taken for every destination; with it, the kernel
/// picks the port at connect time, per (source, destination).
///
/// Best effort: a kernel before 4.2, or a sandbox that emulates the
/// socket calls, may not know the option (`ENOPROTOOPT`). Every connection
/// still works then, only the ports run out sooner (and a socket that
/// finds none says so, as [`Failure::NoPorts`]); so the refusal is said
/// once in the debug log, not once per socket, and the run goes on.
pub(super) fn set_bind_address_no_port(socket: &socket2::Socket) {
    static SAID: Once = Once::new();
    if let Err(e) = bind_address_no_port(socket) {
        SAID.call_once(|| {
            log::debug!(
                "IP_BIND_ADDRESS_NO_PORT not set ({e}): bind picks each --source port \
                 for every destination at once"
            )
        });
    }
}

/// `setsockopt(IP_BIND_ADDRESS_NO_PORT, 1)`: the crate's one unsafe block,
/// because neither rustix nor socket2 wraps this option.
#[allow(unsafe_code)]
fn bind_address_no_port(socket: &socket2::Socket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is borrowed from a live socket for the call;
    // the option value is a pointer to `one`, a live c_int on this stack,
    // with its exact size, and setsockopt only reads it. Nothing else is
    // shared with the kernel, and the result is checked below.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(target: &str, mode: Mode) -> ConnectOptions {
        ConnectOptions {
            target: target.into(),
            mode,
            payload: Vec::new(),
            count: 1,
            sources: Vec::new(),
            hold: Duration::ZERO,
            timeout: None,
            concurrency: 256,
        }
    }

    #[test]
    fn escapes_in_payloads() {
        assert_eq!(
            unescape(r"GET / HTTP/1.0\r\n\r\n").unwrap(),
            b"GET / HTTP/1.0\r\n\r\n"
        );
        assert_eq!(unescape(r"a\x00\\\t").unwrap(), b"a\0\\\t");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
    }

    #[test]
    fn targets_resolve_or_say_why() {
        assert_eq!(
            resolve("127.0.0.1:500", None).unwrap(),
            vec!["127.0.0.1:500".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:500", None).unwrap(),
            vec!["[::1]:500".parse().unwrap()]
        );
        let err = resolve("127.0.0.1", None).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("HOST:PORT"));
    }

    #[test]
    fn a_target_without_host_or_port_is_told_what_to_write() {
        // Each slip, and the words of its fix.
        for (typed, fix) in [
            (
                "localhost",
                "has no port; give it as HOST:PORT: localhost:500",
            ),
            ("[::1]", "[::1]:500"),
            (
                "18501",
                "a port with no host; give both as HOST:PORT: localhost:18501",
            ),
            (
                ":18501",
                "has no host: a client must say which machine to reach; localhost:18501",
            ),
            ("::1", "put the address in brackets"),
            ("localhost:http", "\"http\" is not a port"),
            ("localhost:70000", "\"70000\" is not a port"),
            ("localhost:0", "port 0"),
            ("", "connect needs a target"),
        ] {
            let err = resolve(typed, None).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{typed:?}");
            assert!(err.to_string().contains(fix), "{typed:?}: {err}");
            assert!(!err.to_string().contains("resolve"), "{typed:?}: {err}");
        }
        assert!(resolve("[::1]:500", None).is_ok());
        assert!(resolve("localhost:500", None).is_ok());
    }

    #[test]
    fn a_payload_too_big_for_one_datagram_is_refused_up_front() {
        let mut opts = options("127.0.0.1:9", Mode::Udp);
        opts.payload = vec![b'x'; 65_507];
        assert!(Plan::new(&opts).is_ok());
        opts.payload.push(b'x');
        let err = Plan::new(&opts).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("at most 65507"), "{err}");
        // TCP is a stream: any length goes.
        opts.mode = Mode::Tcp;
        assert!(Plan::new(&opts).is_ok());
    }

    #[test]
    fn http_makes_its_own_request() {
        let mut opts = options("localhost:500", Mode::Http);
        opts.payload = b"ignored".to_vec();
        let plan = Plan::new(&opts).unwrap();
        assert!(plan
            .payload
            .starts_with(b"GET /_/whoami HTTP/1.1\r\nHost: localhost:500\r\n"));
    }

    #[test]
    fn a_refused_address_gives_way_to_the_next_until_one_answers() {
        let a = "[::1]:500".parse().unwrap();
        let b = "127.0.0.1:500".parse().unwrap();
        let mut targets = Targets::new(vec![a, b]);
        assert!(!targets.is_settled());
        assert!(targets.try_next(&Failure::PortUnreachable));
        assert_eq!(targets.current(), b);
        assert!(!targets.try_next(&Failure::Refused), "no address left");
        assert!(targets.is_settled());
        let mut targets = Targets::new(vec![a, b]);
        assert!(
            !targets.try_next(&Failure::TimedOut),
            "a timeout settles it"
        );
        assert_eq!(targets.current(), a);
    }
}
