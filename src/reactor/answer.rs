//! Answering: where the loop hands a connection's bytes to the protocol.
//!
//! The HTTP code is sans-IO (see [`crate::http`]): it takes bytes and
//! appends answers to a buffer, and knows nothing of sockets or slabs. For
//! each step the reactor takes the connection's [`Session`](http::Session)
//! out of the slab, lends it a context ([`Ctx`]: the peer's 5-tuple, the
//! date, the configuration, and the server itself as a read-only
//! [`Host`](http::Host), so that `/_/conns` can look at every connection
//! while this one is being served), and books what the step produced: the
//! answers (counted as served once written), whether the connection is to
//! close, and whether its answer was the event stream's head, which makes
//! the connection a subscriber.

use std::mem;

use log::{debug, info};

use super::Reactor;
use crate::connection::{CloseReason, Preface};
use crate::http::{self, Ctx, Progress};

impl Reactor {
    /// Hands `n` bytes from the read buffer to the connection's HTTP
    /// session, which appends the responses to `write_buf`; with
    /// `--proxy-protocol`, only what follows the PROXY header.
    pub(super) fn answer(&mut self, key: usize, n: usize) -> std::result::Result<(), CloseReason> {
        let start = match self.conns[key].take_preface(&self.read_buf[..n]) {
            Preface::Waiting => return Ok(()),
            Preface::Done(start) => start,
            Preface::Invalid(why) => {
                info!("{}: {why}; closing", self.conns[key].peer().remote);
                return Err(CloseReason::ProxyHeaderInvalid(why));
            }
        };
        if start < n {
            self.with_session(key, |session, ctx, read_buf, write_buf| {
                session.feed(&read_buf[start..n], ctx, write_buf)
            });
        }
        Ok(())
    }

    /// Gives the connection's session its next turn without reading.
    pub(super) fn resume(&mut self, key: usize) {
        self.with_session(key, |session, ctx, _, write_buf| {
            session.resume(ctx, write_buf)
        });
    }

    /// Runs `step` on a connection's HTTP session with a context built from
    /// the reactor, then books the responses it produced.
    pub(super) fn with_session(
        &mut self,
        key: usize,
        step: impl FnOnce(&mut http::Session, &Ctx<'_>, &[u8], &mut Vec<u8>) -> Progress,
    ) {
        // The session is taken out of the slab for the call, so that
        // `/_/conns` can look at the whole slab while this entry is in use.
        let conn = &mut self.conns[key];
        let mut session = conn.take_session();
        let peer = conn.http_peer();
        // The output buffer is taken out too (an empty Vec costs nothing),
        // so that the rest of the reactor can be lent to the context whole.
        let mut out = mem::take(&mut self.write_buf);
        let view = self.view();
        let ctx = Ctx {
            peer,
            host: &view,
            date: self.clock.http_date(),
            config: &self.config.http,
            shutting_down: self.shutdown.begun(),
            access: self.access_log.as_ref(),
        };
        let progress = step(&mut session, &ctx, &self.read_buf, &mut out);
        self.write_buf = out;
        self.live.answered(&progress);
        let events = progress.events;
        self.conns[key].put_session(session, progress);
        if events {
            self.start_streaming(key);
        }
    }

    /// The answer just produced is the event stream's head: the connection
    /// stays open for events, as a subscriber. If all the slots were taken,
    /// the subscriber that gives way is closed by `serve`, once the
    /// newcomer's answer has left the shared output buffer.
    pub(super) fn start_streaming(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.start_streaming() {
            return; // the client closed its side meanwhile: nobody to stream to
        }
        debug!("{}: subscribed to the event stream", conn.peer());
        self.giving_way = self.live.join(conn, self.now);
    }

    /// The client closed its side: answer what it sent, then close.
    pub(super) fn on_peer_closed(&mut self, key: usize) {
        self.with_session(key, |session, ctx, _, _| {
            session.on_eof(ctx);
            Progress::default()
        });
        self.conns[key].on_peer_closed();
    }
}
