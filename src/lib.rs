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
//! kernel's ([`procnet`], which reads `/proc/net/tcp`).
//!
//! # Layout
//!
//! - [`reactor`]: the event loop. One thread, one `mio::Poll`, a
//!   `Slab<Connection>` indexed by token; accept, read, answer, write, close.
//! - [`listener`]: the listening socket built by hand with socket2
//!   (SO_REUSEADDR, backlog, dual-stack), and the open-files limit.
//! - [`connection`]: one accepted stream: its 5-tuple, its counters, and
//!   edge-triggered reading and writing.
//! - [`http`]: HTTP/1.1 as bytes in, bytes out, with no socket in sight
//!   (parsing and framing, responses, routes), so the same code runs under
//!   the tokio version in the benchmarks, in tests and in a fuzzer.
//! - [`table`]: the connection table as a plain snapshot, and its text and
//!   JSON renderings.
//! - [`files`]: serving a directory (`--dir`) with every path through one
//!   safe gate; big files streamed as the connection drains.
//! - [`client`]: `fivetuple connect`, a small mio client event loop.
//! - [`procnet`]: `fivetuple conns`, the kernel's table from `/proc/net/tcp`.
//! - [`live`]: watching the loop: the live page (`/_/`) and its event
//!   stream (`/_/events`), metrics (`/_/metrics`), and `serve --trace`.
//! - [`timer`]: deadlines (header, idle, send timeouts) kept in a lazy
//!   min-heap; the nearest one is the poll timeout.
//! - [`error`]: errors as values; the binary turns them into one line and
//!   an exit code.

pub mod client;
pub mod connection;
pub mod error;
pub mod files;
pub mod http;
pub mod listener;
pub mod live;
pub mod procnet;
pub mod reactor;
pub mod table;
pub mod timer;

pub use error::{Error, Result};
