//! Where the reactor's sockets come from: the listener, and with `--udp`
//! a UDP socket on the same port number.
//!
//! Either they were made before the server started and given to it
//! ([`Given`]: socket activation, or the previous copy of the server in a
//! restart; see [`crate::activation`]), or they are bound here when the
//! server starts. A TCP port and a UDP port
//! with the same number are two different things to the kernel, which
//! keeps one table of ports per protocol: that is why `--udp` can serve
//! both on "port 500", and also why a TCP port picked by the kernel may
//! turn out to be taken for UDP.

use std::io;
use std::net::SocketAddr;

use log::debug;
use mio::net::TcpListener;

use super::ServerConfig;
use crate::error::{Error, Result};
use crate::listener;
use crate::udp::Udp;

/// TCP ports tried when the kernel picks the port (port 0) and `--udp`
/// finds the same number taken for UDP.
const PORT_ZERO_TRIES: usize = 16;

/// Sockets made before the server started, for one reactor: a listener,
/// and for the first reactor the UDP socket, if one was given.
#[derive(Debug)]
pub struct Given {
    pub listener: std::net::TcpListener,
    pub udp: Option<std::net::UdpSocket>,
}

/// The given sockets, or bound ones (see [`bind`]). A given listener
/// with `--udp` and no given UDP socket gets one bound beside it (which
/// may need the privileges that the listener did not).
pub fn take_or_bind(
    config: &ServerConfig,
    given: Option<Given>,
) -> Result<(TcpListener, SocketAddr, Option<Udp>)> {
    let Some(given) = given else {
        return bind(config);
    };
    let local_addr = given
        .listener
        .local_addr()
        .map_err(|e| Error::io("reading the inherited listener's address", e))?;
    let listener = TcpListener::from_std(given.listener);
    let udp = match (config.udp, given.udp) {
        (false, _) => None,
        (true, Some(udp)) => Some(Udp::from_socket(udp)?),
        (true, None) => Some(Udp::bind(local_addr, config.listen.ipv6_only)?),
    };
    Ok((listener, local_addr, udp))
}

/// Binds the listener and, with `--udp`, a UDP socket on the same port
/// number. The kernel keeps a table of ports per protocol, so a TCP port it
/// picked for us (port 0) may be some other program's UDP port (a client's
/// ephemeral port, say): then another TCP port is tried, rather than
/// failing at random. A port given by number is used or refused as it is.
pub fn bind(config: &ServerConfig) -> Result<(TcpListener, SocketAddr, Option<Udp>)> {
    let mut tries = 1;
    loop {
        let listener = listener::bind(&config.listen)?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listening address", e))?;
        if !config.udp {
            return Ok((listener, local_addr, None));
        }
        match Udp::bind(local_addr, config.listen.ipv6_only) {
            Ok(udp) => return Ok((listener, local_addr, Some(udp))),
            Err(e)
                if config.listen.addr.port() == 0
                    && tries < PORT_ZERO_TRIES
                    && e.io_kind() == Some(io::ErrorKind::AddrInUse) =>
            {
                debug!(
                    "UDP port {} is taken: trying another port",
                    local_addr.port()
                );
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
