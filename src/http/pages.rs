//! The server's own documents: the live page (`/_/`), the about page
//! (`/_/about`) and `/robots.txt`.
//!
//! They are part of the protocol's answers, like `/_/hello`, so they live
//! beside the routes that serve them: the routes need nothing from the
//! modules that watch the loop (`crate::live`), which build on this one.
//! The live page is a static file, compiled into the binary; what keeps it
//! current is its script, which reads `/_/conns.json` once and then the
//! event stream (`/_/events`, whose head the route writes and whose events
//! the server's watchers write after it).

use super::response::{html_escape_into, Canned, Status};
use super::Endpoints;

/// The live page: one static HTML file with its style and script inline,
/// so the server needs no other asset and the page works offline. It draws
/// the connection table from `/_/conns.json` and keeps it current from the
/// event stream.
pub const LIVE: &str = include_str!("page.html");

/// The server's `robots.txt`: nothing under `/_/` is worth a crawl, and
/// `/_/events` would hold a crawler forever (see [`super::routes`]).
pub static ROBOTS: Canned = Canned::new(
    Status::OK,
    "text/plain; charset=utf-8",
    b"# fivetuple: the pages under /_/ are this server's own and live (the\n\
      # connection table of the moment, and an event stream that never ends):\n\
      # nothing there for a crawler, a mirror or a link checker.\n\
      User-agent: *\n\
      Disallow: /_/\n",
);

/// A short page that says what this server is, shows the caller its own
/// connection as the server sees it, and links the endpoints.
pub fn about(peer: &Endpoints) -> String {
    let mut you = String::new();
    html_escape_into(&mut you, &format!("tcp {} <- {}", peer.local, peer.remote));
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>fivetuple</title></head>
<body>
<h1>fivetuple</h1>
<p>One listening port, many connections. The kernel tells TCP connections apart
by their 5-tuple (protocol, local address, local port, remote address, remote port),
and every client brings its own ephemeral source port, so all of them can share
this server's one port.</p>
<p>Your connection, as this server sees it: <code>{you}</code></p>
<ul>
<li><a href="/_/">/_/</a>: the live page, every connection as it comes and goes</li>
<li><a href="/_/conns">/_/conns</a>: every connection this server holds, one row each
(<a href="/_/conns.json">as JSON</a>)</li>
<li><code>/_/events</code>: the event stream behind the live page, which never ends
(<code>curl -N</code> shows it as it comes; it is no link here, so that a crawler
does not open it and wait forever)</li>
<li><a href="/_/metrics">/_/metrics</a>: counters, in the Prometheus text format</li>
<li><a href="/_/whoami">/_/whoami</a>: your own 5-tuple</li>
<li><a href="/_/hello">/_/hello</a>: 13 bytes of text, for benchmarks</li>
</ul>
</body></html>
"#
    )
}
