//! What a reactor is told when it starts, and what it says when it stops.

use std::time::Duration;

use crate::http;
use crate::listener::ListenOptions;
use crate::sink::Output;
use crate::timer::Timeouts;

/// Everything `fivetuple serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: ListenOptions,
    pub http: http::Config,
    /// Most connections held at once; one more is closed as soon as accepted.
    pub max_conns: usize,
    /// After SIGINT/SIGTERM, how long in-flight requests get to finish.
    pub shutdown_grace: Duration,
    pub timeouts: Timeouts,
    /// Also serve UDP on the listener's address and port number (`--udp`).
    pub udp: bool,
    /// Every connection starts with a PROXY protocol header from a load
    /// balancer (`--proxy-protocol`).
    pub proxy_protocol: bool,
    /// Where the log, the access log and the trace go (`crate::sink`):
    /// never written from the loop, only handed over.
    pub output: Output,
}

/// What a run of the server did, printed when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub accepted: u64,
    pub served: u64,
    /// The pid of the new copy that took the listening sockets over
    /// (SIGHUP), if one did.
    pub handed_over_to: Option<u32>,
    /// Connections open when it did: this process finished them.
    pub open_at_handover: u64,
    /// Of those, the ones still open when the grace ran out, closed unfinished.
    pub cut_after_handover: u64,
}
