//! The live page in a real browser: headless Chromium opens `/_/` while
//! `fivetuple connect -n 5 --hold` holds five connections, and the test
//! watches the page's table: the five rows appear (with the page's own
//! connection marked "you"), then leave when the connections close.
//! With `--workers 2` the page follows one worker's event stream: it says
//! which, and draws that worker's connections and none of the other's.
//!
//! Chromium is driven through its DevTools protocol over a pair of pipes
//! (`--remote-debugging-pipe`: JSON messages ended by a NUL byte on file
//! descriptors 3 and 4), so the test needs no WebSocket client and no
//! driver. Where Chromium is missing or cannot start, the test skips
//! (tests/privilege); `scripts/install-test-tools` installs it.
//!
//! `FIVETUPLE_SCREENSHOT=docs/live.png cargo test --release --test suite browser::`
//! also saves what the browser shows once the five rows are in.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{wait_until, Server, TempDir};
use crate::privilege::this_test;
use crate::{common, privilege};
use serde_json::{json, Value};

/// A headless Chromium and the pipes of its DevTools protocol.
struct Chromium {
    child: Child,
    to: File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// Its profile, removed after Chromium has exited.
    _profile: TempDir,
}

impl Chromium {
    /// Starts Chromium, or says what is missing for it to run here.
    fn start() -> Result<Chromium, String> {
        let binary = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(|name| privilege::tool(name, "chromium").ok())
            .ok_or_else(|| privilege::tool("chromium", "chromium").unwrap_err())?;
        let shown = binary.display().to_string();
        // A pipe that cannot be made is a broken test machine, not a skip.
        let (to_chrome_r, to_chrome_w) = pipe().unwrap_or_else(|e| panic!("{e}"));
        let (from_chrome_r, from_chrome_w) = pipe().unwrap_or_else(|e| panic!("{e}"));
        let profile = TempDir::new("chromium");
        let mut cmd = Command::new(&binary);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--window-size=1200,760",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so that its helpers (zygote, renderers,
        // crash handler) can be stopped with it, and stop writing in the
        // profile before the profile is removed.
        .process_group(0);
        // SAFETY: between fork and exec only fcntl and dup2, which are
        // async-signal-safe. The pipe ends are first moved above 10, so
        // that neither lands on 3 or 4 before the other has been placed.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::fcntl(to_chrome_r, libc::F_DUPFD, 10);
                let w = libc::fcntl(from_chrome_w, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("a chromium that starts ({shown}: {e})"))?;
        // SAFETY: each descriptor came from pipe() above and is owned here once.
        unsafe {
            libc::close(to_chrome_r);
            libc::close(from_chrome_w);
        }
        let to = unsafe { File::from_raw_fd(to_chrome_w) };
        let from = unsafe { File::from_raw_fd(from_chrome_r) };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop();
                if let Ok(value) = serde_json::from_slice(&message) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        let mut chromium = Chromium {
            child,
            to,
            from: rx,
            next_id: 0,
            session: None,
            _profile: profile,
        };
        chromium
            .call("Browser.getVersion", json!({}))
            .map_err(|e| {
                format!("a chromium that answers on its DevTools pipe ({shown} does not: {e})")
            })?;
        Ok(chromium)
    }

    /// Sends a command (to the attached page, if any) and waits for its result.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.to.write_all(&bytes).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| format!("no answer to {method}"))?;
            let reply = self
                .from
                .recv_timeout(left)
                .map_err(|_| format!("no answer to {method}"))?;
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    return Err(format!("{method}: {error}"));
                }
                return Ok(reply["result"].clone());
            }
        }
    }

    /// Opens `url` in a new page and attaches to it.
    fn open(&mut self, url: &str) -> Result<(), String> {
        let target = self.call("Target.createTarget", json!({"url": url}))?;
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )?;
        self.session = attached["sessionId"].as_str().map(str::to_string);
        Ok(())
    }

    /// Evaluates `expression` in the page; its value, which must be JSON text.
    fn eval_json(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .expect("Runtime.evaluate");
        let text = result["result"]["value"].as_str().unwrap_or("null");
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    fn screenshot(&mut self, path: &str) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .expect("a screenshot");
        let png = base64_decode(shot["data"].as_str().unwrap_or(""));
        std::fs::write(path, png).expect("writing the screenshot");
        eprintln!("saved {path}");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group that Chromium leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn pipe() -> Result<(RawFd, RawFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two descriptors it is given room for.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    sextets
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |n, &s| n << 6 | u32::from(s)) << (6 * (4 - c.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(c.len().saturating_sub(1))
        })
        .collect()
}

/// The page's connection rows as it draws them.
#[derive(Debug)]
struct PageRow {
    remote: String,
    you: bool,
    gone: bool,
}

const ROWS: &str = "JSON.stringify([...document.querySelectorAll('#rows tr[data-token]')]\
    .map(tr => ({remote: tr.dataset.remote, you: tr.classList.contains('you'), \
    gone: tr.classList.contains('gone')})))";

fn page_rows(chromium: &mut Chromium) -> Vec<PageRow> {
    let rows = chromium.eval_json(ROWS);
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| PageRow {
                    remote: r["remote"].as_str().unwrap_or("").to_string(),
                    you: r["you"] == true,
                    gone: r["gone"] == true,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The remote ends of the connections the server holds, except the asker's own.
fn held_remotes(server: &Server) -> HashSet<String> {
    let table: Value = serde_json::from_slice(&server.get("/_/conns.json?all").body).unwrap();
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["token"].is_null() && r["you"] == false)
        .map(|r| r["remote"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_page_shows_five_held_connections_arrive_and_leave() {
    let mut chromium = match Chromium::start() {
        Ok(c) => c,
        Err(need) => return privilege::skip(this_test!(), &need),
    };
    let server = Server::start(&["--quiet"]);
    let mut hold = Command::new(common::bin())
        .args([
            "connect",
            &server.addr.to_string(),
            "-n",
            "5",
            "--hold",
            "120",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fivetuple connect");
    let mut five = HashSet::new();
    wait_until(Duration::from_secs(20), || {
        five = held_remotes(&server);
        five.len() == 5
    });

    chromium
        .open(&format!("http://{}/_/", server.addr))
        .expect("the page opens");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = page_rows(&mut chromium);
        let shown: HashSet<String> = rows
            .iter()
            .filter(|r| !r.gone)
            .map(|r| r.remote.clone())
            .collect();
        if five.is_subset(&shown) && rows.iter().any(|r| r.you && !r.gone) {
            assert!(
                rows.iter().all(|r| !(r.you && five.contains(&r.remote))),
                "a held connection is marked as the viewer's: {rows:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the five connections {five:?} and its own: {rows:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    if let Ok(path) = std::env::var("FIVETUPLE_SCREENSHOT") {
        thread::sleep(Duration::from_millis(2600)); // let the arrival highlight fade
        chromium.screenshot(&path);
    }

    // Ctrl-C ends the hold: the five close, and the page lets them go.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(hold.id() as i32, libc::SIGINT) };
    let _ = hold.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = page_rows(&mut chromium);
        let left = rows
            .iter()
            .filter(|r| !r.gone && five.contains(&r.remote))
            .count();
        if left == 0 {
            assert!(
                rows.iter().any(|r| r.you),
                "the viewer's own row went too: {rows:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connections stayed on the page: {rows:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The connections each worker holds that have sent nothing (the held
/// ones: an asker has sent its request), from every worker's table.
fn idle_by_worker(server: &Server) -> Vec<HashSet<String>> {
    let all: Value = serde_json::from_slice(&server.get("/_/conns.json?workers&all").body).unwrap();
    all["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w["table"]["rows"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| !r["token"].is_null() && r["bytes_in"] == 0)
                        .map(|r| r["remote"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn with_two_workers_the_page_draws_its_streams_worker() {
    let mut chromium = match Chromium::start() {
        Ok(c) => c,
        Err(need) => return privilege::skip(this_test!(), &need),
    };
    let server = Server::start(&["--quiet", "--workers", "2"]);
    let mut hold = Command::new(common::bin())
        .args(["connect", &server.addr.to_string(), "-n", "8"])
        .args(["--hold", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fivetuple connect");
    let mut by_worker = Vec::new();
    wait_until(Duration::from_secs(20), || {
        by_worker = idle_by_worker(&server);
        by_worker.iter().map(HashSet::len).sum::<usize>() == 8
    });

    // The page says which worker's stream it follows, and draws that
    // worker's connections and none of the other's.
    chromium
        .open(&format!("http://{}/_/", server.addr))
        .expect("the page opens");
    let status = "JSON.stringify(document.getElementById('status').textContent)";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let worker = chromium.eval_json(status).as_str().and_then(|s| {
            s.strip_prefix("live · worker ")
                .and_then(|w| w.parse::<usize>().ok())
        });
        let shown: HashSet<String> = page_rows(&mut chromium)
            .into_iter()
            .filter(|r| !r.gone && !r.you)
            .map(|r| r.remote)
            .collect();
        if let Some(w) = worker.filter(|&w| w < 2) {
            if by_worker[w].is_subset(&shown) && by_worker[1 - w].is_disjoint(&shown) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed its worker's connections alone: worker {worker:?}, \
             shown {shown:?}, held {by_worker:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(hold.id() as i32, libc::SIGINT) };
    let _ = hold.wait();
}
