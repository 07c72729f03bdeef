//! How connections come in: accepting with a budget per turn, and what
//! happens at the cap.
//!
//! Every accepted connection shares the listener's port: the kernel hands
//! over a new socket whose remote address and port are the client's own,
//! and the connection goes into the slab under a fresh key, which is also
//! its token in the `Poll`.
//!
//! Two limits shape this step. A turn accepts at most
//! [`ACCEPTS_PER_TURN`], so that a backlog that never empties cannot keep
//! everyone else waiting. And the server holds at most `--max-conns`
//! descriptors for its clients (a socket each, and one more per file body
//! being sent): at the cap it makes room by closing the idlest connection
//! that owes nothing, or, if every one is busy, refuses the newcomer with
//! a 503 rather than leaving it to wait in silence. Running out of
//! descriptors anyway (EMFILE) pauses accepting until one is given back.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info, trace, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::Reactor;
use crate::connection::{CloseReason, Connection};
use crate::http::{self, Endpoints};

/// Connections accepted per turn of the loop, at most. Accepting "until
/// `WouldBlock`" never ends when clients reconnect as fast as they are
/// served: the backlog refills while we drain it, and every connection
/// already open waits behind it. 32 keeps a turn short (each accept also
/// reads and often answers its request at once, a few microseconds each)
/// while costing one extra `epoll_wait` per 32 connections. nginx takes one
/// per event unless `multi_accept`; h2o caps accepts per wake-up the same way.
pub const ACCEPTS_PER_TURN: usize = 32;

/// How long to wait before trying `accept` again after running out of file
/// descriptors, if no connection has closed meanwhile.
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl Reactor {
    /// Accepts connections waiting in the backlog, at most
    /// [`ACCEPTS_PER_TURN`]. Edge-triggered: one readable event may stand
    /// for many connections and no other event comes for those already
    /// waiting, so if the budget runs out before `WouldBlock`, the listener
    /// goes on the ready list and gets another turn after everyone else.
    pub(super) fn accept_some(&mut self) {
        self.listener_ready = false;
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => self.admit(stream, remote),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.live.note("accept would block: the backlog is empty");
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up between its handshake and our accept.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    self.live.accept_failed(&e);
                    continue;
                }
                Err(e) => {
                    self.live.accept_failed(&e);
                    // Out of descriptors (EMFILE, ENFILE) or kernel memory:
                    // retry when a connection closes or after ACCEPT_RETRY.
                    if !self.accept_paused {
                        warn!(
                            "accept: {e}; {} connections open; pausing accept until one closes",
                            self.conns.len()
                        );
                    }
                    self.accept_paused = true;
                    return;
                }
            }
        }
        self.live
            .note("accept budget spent: the listener waits on the ready list");
        trace!("accept budget of {ACCEPTS_PER_TURN} spent: the listener waits on the ready list");
        self.listener_ready = true;
    }

    /// Descriptors the server holds for clients: one socket per connection,
    /// plus one per file body being sent. `--max-conns` caps this sum, so the
    /// server refuses or reclaims before the kernel says EMFILE.
    pub(super) fn descriptors_in_use(&self) -> usize {
        self.conns.len() + self.bodies_held
    }

    /// Puts a newly accepted stream in the slab and registers it under its key.
    pub(super) fn admit(&mut self, mut stream: TcpStream, remote: SocketAddr) {
        self.accept_paused = false;
        let in_use = self.descriptors_in_use();
        if in_use >= self.config.max_conns {
            // At the cap: make room by closing the connection that owes
            // nothing and has waited longest; never one in the middle of
            // something (see `reclaim`).
            match self.reclaim.pick(&self.conns) {
                Some(key) => self.close(key, CloseReason::Reclaimed),
                None => {
                    self.live.refused(remote);
                    info!(
                        "refusing {remote}: {in_use} descriptors in use, all connections busy (--max-conns)"
                    );
                    return self.refuse(stream);
                }
            }
        }
        // The local address of an accepted socket is the address the client
        // reached. A listener bound to one address (127.0.0.1:500) is only
        // reached there; on the wildcard (0.0.0.0, ::) it can be any of the
        // machine's addresses, and only the kernel knows which (getsockname).
        let local = if self.local_addr.ip().is_unspecified() {
            match stream.local_addr() {
                Ok(local) => local,
                Err(e) => return debug!("dropping {remote}: getsockname: {e}"),
            }
        } else {
            self.local_addr
        };
        // Responses leave in one write each; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let open = self.conns.len() + 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Interested in both directions, once, for the connection's whole
        // life: with edge triggering a writable event only comes after a
        // write found the buffer full, so there is no need to re-register.
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return warn!("dropping {remote}: register: {e}");
        }
        self.stats.accepted += 1;
        let peer = Endpoints {
            token: key,
            local,
            remote,
        };
        debug!("accept {peer}, token {key}; {open} open");
        let conn = entry.insert(Connection::new(
            stream,
            peer,
            self.stats.accepted,
            self.now,
            self.config.proxy_protocol,
        ));
        self.live.accepted(conn, self.now);
        // An HTTP client sends its request as soon as it is connected, so
        // the request is often here before we accept. Try a read now rather
        // than one turn of the loop later; if nothing has come, it costs
        // one `WouldBlock`, and the registration reports the data when it comes.
        trace!("token {key}: reading its request right at accept");
        self.serve(key);
    }

    /// Tells a client the server is full, instead of leaving it to wait in
    /// silence: one read to take the request that is usually there already
    /// (so the close is not a reset that destroys the answer, and a HEAD
    /// gets no body), a 503 written straight into the empty send buffer (it
    /// always fits), our FIN, and the socket is closed when `stream` is
    /// dropped.
    pub(super) fn refuse(&mut self, mut stream: TcpStream) {
        let n = stream.read(&mut self.read_buf).unwrap_or_default();
        let mut page = Vec::new();
        http::session::write_full(&self.read_buf[..n], self.clock.http_date(), &mut page);
        let _ = stream.write(&page);
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}
