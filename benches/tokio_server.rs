//! The tokio version of `fivetuple serve`, for the benchmark comparison.
//!
//! Same routes, same limits, same sans-IO protocol code (`fivetuple::http`),
//! written the way tokio code is usually written: one task per connection,
//! a read buffer per task, every response of one read sent with one
//! `write_all`. A file body the protocol names (a `FileRange`) is sent as
//! the reactor sends it: its head with `MSG_MORE`, then `sendfile(2)` in
//! pieces of the same size, each after tokio says the socket is writable. The only difference from
//! the mio reactor is the event loop, which is the point of the comparison.
//!
//! ```text
//! tokio_server [--listen ADDR] [--flavor current_thread|multi_thread] [--workers N] [--dir PATH]
//! ```
//! It prints `listening on ADDR` once bound, like `fivetuple serve`.
//! `--dir PATH` serves a directory at `/`, through the same `files::Site`
//! as `fivetuple serve --dir`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fivetuple::connection::FILE_PER_TURN;
use fivetuple::files::Site;
use fivetuple::http::response::Clock;
use fivetuple::http::{self, Ctx, Endpoints, Host, Session};
use fivetuple::procnet::TcpState;
use fivetuple::table::{ConnRow, ConnTable, Format, Phase, RowState};
use rustix::net::SendFlags;
use slab::Slab;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};

/// Read buffer per connection: hyper's starting size. (The mio reactor
/// shares one 64 KiB buffer among all connections instead.)
const READ_BUFFER: usize = 8 * 1024;

thread_local! {
    /// The Date header, formatted once per second per worker thread.
    static CLOCK: RefCell<Clock> = RefCell::new(Clock::default());
}

/// What the table shows about one connection. Counters are not kept: that
/// would take the lock on every request.
struct ConnInfo {
    local: SocketAddr,
    remote: SocketAddr,
    accepted_at: Instant,
}

/// The live connections, locked only at accept, at close and for `/_/conns`.
struct Registry {
    conns: Mutex<Slab<ConnInfo>>,
    listen: SocketAddr,
    started: Instant,
}

impl Host for Registry {
    fn write_table(&self, me: usize, format: Format, rows: usize, out: &mut Vec<u8>) {
        let now = Instant::now();
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let row = |key: usize, c: &ConnInfo, you: bool| ConnRow {
            token: Some(key),
            proto: "tcp",
            local: c.local,
            remote: Some(c.remote),
            state: RowState::Tcp(TcpState::Established),
            phase: if you { Phase::Writing } else { Phase::Idle },
            age_ms: now.duration_since(c.accepted_at).as_millis() as u64,
            bytes_in: 0,
            bytes_out: 0,
            requests: Some(0),
            you,
            client: None,
        };
        let mut table = vec![ConnRow::listener(
            self.listen,
            now.duration_since(self.started),
        )];
        table.extend(conns.iter().take(rows).map(|(key, c)| row(key, c, false)));
        let shown = table.len() - 1;
        let mine = conns.get(me).map(|c| row(me, c, true));
        let snapshot = ConnTable {
            listen: self.listen,
            open: conns.len(),
            accepted: 0,
            served: 0,
            hidden: conns.len() - shown,
            udp_peers: None,
            udp: None,
            worker: None,
            rows: table,
        };
        drop(conns);
        snapshot.render(format).write_for(mine.as_ref(), out);
    }
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut flavor = "current_thread".to_string();
    let mut workers = 2;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--listen", Some(v)) => listen = v.parse().expect("--listen ADDR:PORT"),
            ("--flavor", Some(v)) => flavor = v,
            ("--workers", Some(v)) => workers = v.parse().expect("--workers N"),
            ("--dir", Some(v)) => dir = Some(PathBuf::from(v)),
            (other, _) => {
                eprintln!("tokio_server: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let runtime = match flavor.as_str() {
        "current_thread" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        "multi_thread" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build(),
        other => {
            eprintln!("tokio_server: --flavor current_thread or multi_thread, not {other}");
            std::process::exit(2);
        }
    }
    .expect("runtime");
    let mut config = http::Config::default();
    if let Some(dir) = dir {
        match Site::new(&dir, false) {
            Ok(site) => config.files = Some(Arc::new(site)),
            Err(e) => {
                eprintln!("tokio_server: {e}");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = runtime.block_on(serve(listen, config)) {
        eprintln!("tokio_server: {e}");
        std::process::exit(1);
    }
}

async fn serve(addr: SocketAddr, config: http::Config) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let listen = listener.local_addr()?;
    println!("listening on {listen}");
    use std::io::Write;
    std::io::stdout().flush()?;
    let registry = Arc::new(Registry {
        conns: Mutex::new(Slab::new()),
        listen,
        started: Instant::now(),
    });
    let config = Arc::new(config);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let token = registry
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ConnInfo {
                local,
                remote,
                accepted_at: Instant::now(),
            });
        let peer = Endpoints {
            token,
            local,
            remote,
        };
        let (registry, config) = (registry.clone(), config.clone());
        tokio::spawn(async move {
            let _ = connection(stream, peer, &registry, &config).await;
            registry
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(token);
        });
    }
}

/// One connection: read, let the session answer, write, until either side closes.
async fn connection(
    mut stream: TcpStream,
    peer: Endpoints,
    registry: &Registry,
    config: &http::Config,
) -> std::io::Result<()> {
    let mut session = Session::default();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out = Vec::new();
    loop {
        let n = stream.read(&mut buf).await?;
        let step = |session: &mut Session, out: &mut Vec<u8>, input: Option<&[u8]>| {
            CLOCK.with(|clock| {
                let mut clock = clock.borrow_mut();
                clock.refresh();
                let ctx = Ctx {
                    peer,
                    host: registry,
                    date: clock.http_date(),
                    config,
                    shutting_down: false,
                    access: None,
                };
                match input {
                    Some([]) => {
                        session.on_eof(&ctx);
                        http::Progress::default()
                    }
                    Some(bytes) => session.feed(bytes, &ctx, out),
                    None => session.resume(&ctx, out),
                }
            })
        };
        let mut close = step(&mut session, &mut out, Some(&buf[..n])).close;
        if n == 0 {
            return Ok(());
        }
        // Write what the session produced, then the file body it names, if
        // any, and let it go on (requests waiting their turn) until it has
        // nothing more; close only then, when the last answer asked for it.
        loop {
            if session.file_body().is_some() {
                write_all_more(&stream, &out).await?;
                out.clear();
                send_file_body(&stream, &mut session).await?;
            } else if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            if !session.wants_resume() {
                break;
            }
            close |= step(&mut session, &mut out, None).close;
        }
        if close {
            return Ok(());
        }
    }
}

/// Writes all of `bytes` (the answers before a file body, its head last)
/// with `send(MSG_MORE)`, as the reactor does: the kernel holds the head
/// for the file's first bytes instead of sending a small packet of its own.
async fn write_all_more(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        let written = stream.try_io(Interest::WRITABLE, || {
            rustix::net::send(stream, bytes, SendFlags::MORE).map_err(std::io::Error::from)
        });
        match written {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends the session's file body, if it has one, from the file straight
/// into the socket: `sendfile(2)` on the raw descriptors, at most
/// `FILE_PER_TURN` bytes per call, the reactor's share per turn, so that
/// both servers make the same system calls. Each call runs inside
/// `try_io` once tokio says the socket is writable: a full send buffer
/// (`WouldBlock`) clears that readiness, and the task sleeps until the
/// socket has room again. A file that ends before its range does (it
/// shrank) is an error, and the connection closes.
async fn send_file_body(stream: &TcpStream, session: &mut Session) -> std::io::Result<()> {
    while let Some(body) = session.file_body() {
        let want =
            usize::try_from(body.remaining()).map_or(FILE_PER_TURN, |r| r.min(FILE_PER_TURN));
        let mut offset = body.offset();
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, body.file(), Some(&mut offset), want)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => return Err(fivetuple::http::body::shrank()),
            Ok(n) => session.file_sent(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
