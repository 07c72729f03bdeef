//! # fivetuple: how one port serves many connections
//!
//! A TCP server listens on one port, yet holds thousands of connections on
//! it at once. That works because the kernel does not tell connections apart
//! by the server's port: it tells them apart by the whole 5-tuple (protocol,
//! local address, local port, remote address, remote port), and every client
//! brings its own ephemeral source port. This crate makes that visible from
//! three sides: the server's ([`reactor`], which keeps every connection in a
//! slab keyed by its mio token and shows the table at `/_/conns`), the
//! client's ([`client`], which prints each connection's own 5-tuple) and the
//! kernel's ([`procnet`], which reads `/proc/net/tcp` and `/proc/net/udp`).
//!
//! # Layout
//!
//! - [`reactor`]: the event loop. One thread, one `mio::Poll`, a
//!   `Slab<Connection>` indexed by token; accept, read, answer, write, and
//!   act on what each connection decides. Beside the loop, each thing it
//!   owns in a file of its own that the loop asks for its alarm and gives
//!   its tick: `accept.rs` (the budget and the cap), `reclaim.rs` (the
//!   queue of connections to close when full), `shutdown.rs` (signals and
//!   the grace), `board.rs` (the workers' board), `datagrams.rs` (the UDP
//!   socket), `sockets.rs` (where the sockets come from), `host.rs` (the
//!   server as the protocol sees it).
//! - [`listener`]: the listening socket built by hand with socket2
//!   (SO_REUSEADDR, backlog, dual-stack), and the open-files limit.
//! - [`connection`]: one accepted stream: its 5-tuple, its counters,
//!   edge-triggered reading and writing, and its life as two small states,
//!   what it reads and what it writes ([`connection::state`]), from which
//!   it decides what becomes of it.
//! - [`http`]: HTTP/1.1 as bytes in, bytes out, with no socket in sight
//!   (parsing and framing, responses, routes, the server's own pages,
//!   conditional requests and ranges), so the same code runs under the
//!   tokio version in the benchmarks, in tests and in a fuzzer.
//! - [`table`]: the connection table as a plain snapshot, and its text and
//!   JSON renderings.
//! - [`files`]: serving a directory (`--dir`) with every path through one
//!   safe gate; big files sent with `sendfile` as the connection drains.
//! - [`client`]: `fivetuple connect`, a small mio client event loop that
//!   speaks TCP, HTTP or UDP and shows both ends of each socket.
//! - [`procnet`]: `fivetuple conns`, the kernel's tables from
//!   `/proc/net/{tcp,udp}`, as netstat shows them.
//! - [`sys`]: what the server's loop and the client's share: epoll with the
//!   signal pipe in it, a wait that `EINTR` does not break, durations from
//!   the command line.
//! - [`proxy`]: the PROXY protocol header a load balancer sends first, with
//!   the original client's addresses (`serve --proxy-protocol`).
//! - [`udp`]: `serve --udp`, a UDP socket on the listener's port number:
//!   one socket for every peer, told apart by each datagram's source.
//! - [`workers`]: `serve --workers N`, the pool that binds several
//!   reactors on one port (SO_REUSEPORT) and runs each on its own thread;
//!   they share nothing but the board (`reactor/board.rs`).
//! - [`activation`]: listening sockets made before the server started
//!   (systemd's socket activation, `LISTEN_FDS`), checked and taken.
//! - [`restart`]: SIGHUP starts a new copy of the binary with the same
//!   listening sockets and waits until it is ready (`NOTIFY_SOCKET`);
//!   then this one stops accepting, finishes its connections and exits.
//! - [`privileges`]: `serve --user`: bind as root, then drop to a user.
//! - [`live`]: watching the loop: the live page (`/_/`) and its event
//!   stream (`/_/events`), metrics (`/_/metrics`), and `serve --trace`.
//! - [`timer`]: deadlines (header, idle, send timeouts) kept in a lazy
//!   min-heap; the nearest one is the poll timeout.
//! - [`error`]: errors as values; the binary turns them into one line and
//!   an exit code.
//! - [`sink`]: output that never waits: the log, the access log and the
//!   trace go through a bounded buffer and a writer thread, so a reader
//!   that stops cannot stop the loop.
//!
//! The modules stack without circles: none uses a module that uses it
//! back, however long the way round, so each can be read and tested on
//! its own. `http` uses nothing of the server but the plain data of
//! `table`; the server reaches it, and it reaches the server only through
//! its traits. A test (`src/import_map.rs`) reads every file under `src/`
//! and fails naming any circle.
//!
//! The library prints nothing itself. The binary (`src/main.rs`, with
//! `src/cli/` for `connect` and `conns`) reads the command line, calls the
//! library, and prints what it returns.

// Two exceptions: in client/plan.rs, a setsockopt that no safe wrapper
// offers; in activation.rs, taking ownership of the descriptors that socket
// activation passes by number.
#![deny(unsafe_code)]

pub mod activation;
pub mod client;
pub mod connection;
pub mod error;
pub mod files;
pub mod http;
pub mod listener;
pub mod live;
pub mod privileges;
pub mod procnet;
pub mod proxy;
pub mod reactor;
pub mod restart;
pub mod sink;
pub mod sys;
pub mod table;
pub mod timer;
pub mod udp;
pub mod workers;

#[cfg(test)]
mod import_map;

pub use error::{Error, Result};
