//! `fivetuple serve --dir`: parity with `python3 -m http.server` where it is
//! right, and the safe answer where it is not.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    fd_count, open_fds, read_response, read_response_to, rss_kib, Response, Server, TempDir,
};
use crate::privilege::this_test;
use crate::{common, privilege};

/// A generated site in a directory of its own, removed when dropped.
fn sample_site(name: &str) -> TempDir {
    let site = TempDir::new(name);
    let dir = site.path();
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::create_dir_all(dir.join("with space")).unwrap();
    fs::write(dir.join("a.txt"), "hello\n").unwrap();
    fs::write(dir.join("sub/index.html"), "<h1>sub</h1>\n").unwrap();
    fs::write(dir.join("sub/deeper/data.json"), "{\"x\": 1}\n").unwrap();
    fs::write(dir.join("with space/été.txt"), "été\n").unwrap();
    fs::write(dir.join("<b>&.txt"), "angle\n").unwrap();
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(dir.join("big.bin"), big).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link-in")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("link-out")).unwrap();
    // Links that stay inside, written the ways people write them.
    std::os::unix::fs::symlink(dir.join("a.txt"), dir.join("link-abs-in")).unwrap();
    std::os::unix::fs::symlink(dir.join("sub"), dir.join("dir-abs-in")).unwrap();
    let own_name = dir.file_name().unwrap().to_str().unwrap();
    let back_in = format!("../{own_name}/a.txt");
    std::os::unix::fs::symlink(back_in, dir.join("out-and-back")).unwrap();
    site
}

fn serve(site: &TempDir, extra: &[&str]) -> Server {
    Server::start(&[&["--dir", site.arg(), "--quiet"], extra].concat())
}

/// One raw request (the path exactly as given) on a fresh connection.
fn raw(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str) -> Response {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    read_response_to(&mut s, method == "HEAD").expect("a response")
}

fn get(server: &Server, path: &str) -> Response {
    raw(server.addr, "GET", path, "")
}

/// python3 -m http.server on the same directory.
struct Python {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Python {
    fn start(dir: &Path) -> Python {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut out = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\n") && out.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
        }
        // "Serving HTTP on 127.0.0.1 port 36261 (http://127.0.0.1:36261/) ..."
        let text = String::from_utf8_lossy(&line);
        let port: u16 = text
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("python said {text:?}"));
        Python {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn essence(r: &Response) -> String {
    r.header("Content-Type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn same_answers_as_pythons_http_server_where_python_is_right() {
    let site = sample_site("diff");
    let ours = serve(&site, &[]);
    let python = Python::start(site.path());
    // (method, path, compare Content-Length too)
    let same = [
        ("GET", "/", false),
        ("GET", "/a.txt", true),
        ("HEAD", "/a.txt", true),
        ("GET", "/a.txt?x=1", true),
        ("GET", "/sub", false),
        ("GET", "/sub/", true),
        ("GET", "/sub/index.html", true),
        ("GET", "/sub/deeper/", false),
        ("GET", "/sub/deeper/data.json", true),
        ("GET", "/with%20space/", false),
        ("GET", "/with%20space/%C3%A9t%C3%A9.txt", true),
        ("GET", "/big.bin", true),
        ("HEAD", "/big.bin", true),
        ("GET", "/nope", false),
        ("GET", "/sub/nope.txt", false),
        // Links that stay inside, however they are written.
        ("GET", "/link-in", true),
        ("GET", "/link-abs-in", true),
        ("GET", "/dir-abs-in/", true),
        ("GET", "/dir-abs-in/deeper/data.json", true),
        ("GET", "/out-and-back", true),
    ];
    for (method, path, length) in same {
        let a = raw(ours.addr, method, path, "");
        let b = raw(python.addr, method, path, "");
        assert_eq!(a.status, b.status, "{method} {path}");
        if a.status != 301 {
            // (python's redirect has no body and no Content-Type; ours has a short page)
            assert_eq!(essence(&a), essence(&b), "{method} {path}: Content-Type");
        }
        if length {
            assert_eq!(
                a.header("Content-Length"),
                b.header("Content-Length"),
                "{method} {path}"
            );
            assert_eq!(a.body, b.body, "{method} {path}");
        }
        if a.status == 200 && a.header("Last-Modified").is_some() {
            assert_eq!(
                a.header("Last-Modified"),
                b.header("Last-Modified"),
                "{method} {path}"
            );
        }
        assert_eq!(
            a.header("Location"),
            b.header("Location"),
            "{method} {path}"
        );
    }
    // Where python's server answers unsafely, ours answers safely.
    assert_eq!(
        raw(python.addr, "GET", "/link-out", "").status,
        200,
        "python follows links out"
    );
    assert_eq!(get(&ours, "/link-out").status, 404);
    for path in [
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/a.txt%00.html",
    ] {
        assert_eq!(get(&ours, path).status, 400, "{path}");
    }
}

#[test]
fn traversal_in_every_spelling_is_refused() {
    let site = sample_site("traversal");
    let server = serve(&site, &[]);
    let cases = [
        ("/..", 400),
        ("/../", 400),
        ("/sub/../../etc/passwd", 400),
        ("/%2e%2e/etc/passwd", 400),
        ("/%2E%2E%2Fetc%2Fpasswd", 400),
        ("/..%2fetc/passwd", 400),
        ("/sub%2f..%2f..%2fetc%2fpasswd", 400),
        ("/..\\..\\etc\\passwd", 400),
        ("/%5c..%5cetc", 400),
        ("/a.txt%00", 400),
        ("/%c0%ae%c0%ae/etc/passwd", 400),
        ("/%e0%80%ae", 400),
        ("/%", 400),
        ("/%g1", 400),
        ("//etc/passwd", 404),
        ("///etc/passwd", 404),
        ("http://evil.example/../etc/passwd", 400),
        ("http://evil.example/a.txt", 200),
    ];
    for (path, status) in cases {
        let r = get(&server, path);
        assert_eq!(r.status, status, "{path}");
        assert!(!r.text().contains("root:"), "{path} leaked /etc/passwd");
    }
}

#[test]
fn symlinks_out_need_follow_symlinks() {
    let site = sample_site("links");
    let strict = serve(&site, &[]);
    for inside in ["/link-in", "/link-abs-in", "/out-and-back"] {
        assert_eq!(get(&strict, inside).body, b"hello\n", "{inside}");
    }
    assert_eq!(get(&strict, "/link-out").status, 404);
    let lenient = serve(&site, &["--follow-symlinks"]);
    let r = get(&lenient, "/link-out");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("root:"));
}

#[test]
fn redirects_never_start_with_two_slashes() {
    let site = sample_site("redirect");
    fs::create_dir_all(site.join("evil.example")).unwrap();
    let server = serve(&site, &[]);
    for path in [
        "//evil.example",
        "///evil.example",
        "/./evil.example",
        "//evil.example?q=\\x",
    ] {
        let r = get(&server, path);
        assert_eq!(r.status, 301, "{path}");
        let location = r.header("Location").unwrap();
        assert!(
            location.starts_with("/evil.example/"),
            "{path} -> {location}"
        );
        assert!(
            !location.starts_with("//") && !location.contains('\\'),
            "{path} -> {location}"
        );
    }
}

/// The `href`s of a listing page, in order, without the link up or the
/// server's own (absolute) links.
fn hrefs(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| *href != "../" && !href.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// Every `<a href>` of a page as python's `html.parser` reads it.
fn hrefs_by_html_parser(page: &str) -> Vec<String> {
    let script = "import sys\n\
                  from html.parser import HTMLParser\n\
                  class Links(HTMLParser):\n    \
                  def handle_starttag(self, tag, attrs):\n        \
                  print(*(v for k, v in attrs if tag == 'a' and k == 'href'), sep='\\n')\n\
                  Links().feed(sys.stdin.read())\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "html.parser failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The rows of our listing page, one per entry.
fn rows(page: &str) -> Vec<&str> {
    page.lines()
        .filter(|l| l.starts_with("<tr><td>") || l.starts_with("<tr class="))
        .collect()
}

#[test]
fn listings_escape_names_and_show_size_and_time() {
    let site = sample_site("listing");
    let server = serve(&site, &[]);
    let page = get(&server, "/").text();
    assert!(page.contains("&lt;b&gt;&amp;.txt"), "{page}");
    assert!(!page.contains("<b>&"));
    assert!(page.contains("href=\"%3Cb%3E%26.txt\""), "{page}");
    assert!(page.contains(">sub/</a>") && page.contains("href=\"sub/\""));
    assert!(page.contains(">with space/</a>") && page.contains("href=\"with%20space/\""));
    assert!(page.contains(">link-in@</a>"), "{page}");
    assert!(!page.contains("href=\"../\""), "no way up from the root");
    assert!(page.contains("href=\"/_/\""), "a way to the live page");
    assert!(
        !page.contains("http://") && !page.contains("<link"),
        "no external assets"
    );
    // Size and modification time: a file's are what a GET of it says.
    let a = get(&server, "/a.txt");
    let modified = a.header("Last-Modified").unwrap();
    let row = rows(&page)
        .into_iter()
        .find(|r| r.contains("href=\"a.txt\""))
        .expect("a row for a.txt");
    assert!(row.contains("title=\"6 bytes\">6 B</td>"), "{row}");
    assert!(row.contains(&format!(">{modified}</td>")), "{row}");
    let row = rows(&page)
        .into_iter()
        .find(|r| r.contains("href=\"big.bin\""))
        .unwrap();
    assert!(
        row.contains("title=\"5000000 bytes\">4.8 MiB</td>"),
        "{row}"
    );
    let row = rows(&page)
        .into_iter()
        .find(|r| r.contains("href=\"sub/\""))
        .unwrap();
    assert!(row.contains(">-</td>"), "a directory has no size: {row}");
    // The page has a style of its own, and nothing but its own.
    assert!(
        page.contains("<style>") && page.contains("system-ui"),
        "{page}"
    );
    // Below the root, the first row leads up.
    let deeper = get(&server, "/sub/deeper/").text();
    assert!(
        rows(&deeper)[0].contains("<a href=\"../\">../</a>"),
        "{deeper}"
    );
    // Error pages escape what the client sent.
    let r = get(&server, "/%3Cscript%3E");
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("<script>"));
}

#[test]
fn listings_are_in_pythons_order() {
    let site = sample_site("order");
    for dir in ["binutils", "binutils-common", "Zeta", "tree/b-c", "tree/b"] {
        fs::create_dir_all(site.join(dir)).unwrap();
    }
    for file in [
        "B.txt",
        "b-",
        "_under",
        "Éclair.txt",
        "eclair",
        "tree/B.md",
        "tree/a",
    ] {
        fs::write(site.join(file), "x").unwrap();
    }
    let ours = serve(&site, &[]);
    let python = Python::start(site.path());
    for path in ["/", "/tree/"] {
        let a = get(&ours, path);
        let b = raw(python.addr, "GET", path, "");
        assert_eq!((a.status, b.status), (200, 200), "{path}");
        // python links `link-out` too, which only it can open; ours names
        // it without a link.
        let mut theirs = hrefs(&b.text());
        theirs.retain(|href| href != "link-out");
        assert_eq!(hrefs(&a.text()), theirs, "{path}");
    }
    let names = hrefs(&get(&ours, "/").text());
    let at = |name: &str| names.iter().position(|n| n == name).unwrap();
    assert!(at("binutils/") < at("binutils-common/"), "{names:?}");
}

#[test]
fn ranges_and_conditionals() {
    let site = sample_site("ranges");
    let server = serve(&site, &[]);
    let whole = fs::read(site.join("big.bin")).unwrap();
    let r = raw(server.addr, "GET", "/big.bin", "Range: bytes=100-199\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Range"), Some("bytes 100-199/5000000"));
    assert_eq!(r.body, &whole[100..200]);
    let r = raw(server.addr, "GET", "/big.bin", "Range: bytes=-10\r\n");
    assert_eq!(r.body, &whole[whole.len() - 10..]);
    let r = raw(server.addr, "GET", "/big.bin", "Range: bytes=4999990-\r\n");
    assert_eq!(r.body, &whole[4_999_990..]);
    let r = raw(server.addr, "GET", "/big.bin", "Range: bytes=5000000-\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */5000000"));
    let r = raw(server.addr, "GET", "/a.txt", "Range: bytes=0-1,3-4\r\n");
    assert_eq!(r.status, 200, "several ranges: the whole file");

    let first = get(&server, "/a.txt");
    let etag = first.header("ETag").unwrap().to_string();
    let modified = first.header("Last-Modified").unwrap().to_string();
    let r = raw(
        server.addr,
        "GET",
        "/a.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = raw(
        server.addr,
        "GET",
        "/a.txt",
        &format!("If-None-Match: \"other\", W/{etag}\r\n"),
    );
    assert_eq!(r.status, 304, "weak comparison");
    let r = raw(
        server.addr,
        "GET",
        "/a.txt",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(r.status, 304);
    let r = raw(
        server.addr,
        "GET",
        "/a.txt",
        "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
    );
    assert_eq!(r.status, 200);
    let r = raw(
        server.addr,
        "GET",
        "/a.txt",
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(r.status, 200, "If-None-Match wins over If-Modified-Since");
    let r = raw(
        server.addr,
        "GET",
        "/big.bin",
        "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n",
    );
    assert_eq!(r.status, 200, "a stale If-Range gets the whole file");
}

#[test]
fn if_match_and_if_unmodified_since_refuse_a_changed_file_with_412() {
    let site = sample_site("preconditions");
    let server = serve(&site, &[]);
    let first = get(&server, "/a.txt");
    let etag = first.header("ETag").unwrap().to_string();
    let modified = first.header("Last-Modified").unwrap().to_string();
    let old = "Sat, 01 Jan 2000 00:00:00 GMT";
    let cases = [
        (format!("If-Match: {etag}\r\n"), 200),
        (format!("If-Match: \"other\", {etag}\r\n"), 200),
        ("If-Match: *\r\n".to_string(), 200),
        ("If-Match: \"other\"\r\n".to_string(), 412),
        // If-Match compares strongly: a weak tag never matches.
        (format!("If-Match: W/{etag}\r\n"), 412),
        (format!("If-Unmodified-Since: {modified}\r\n"), 200),
        (format!("If-Unmodified-Since: {old}\r\n"), 412),
        ("If-Unmodified-Since: not a date\r\n".to_string(), 200),
        // RFC 9110 §13.2.2: If-Unmodified-Since only without If-Match ...
        (
            format!("If-Match: {etag}\r\nIf-Unmodified-Since: {old}\r\n"),
            200,
        ),
        // ... and a failed precondition comes before a 304 or a range.
        (
            format!("If-Match: \"other\"\r\nIf-None-Match: {etag}\r\n"),
            412,
        ),
        (
            format!("If-Unmodified-Since: {old}\r\nIf-Modified-Since: {modified}\r\n"),
            412,
        ),
        (
            "If-Match: \"other\"\r\nRange: bytes=0-1\r\n".to_string(),
            412,
        ),
        (format!("If-Match: {etag}\r\nRange: bytes=0-1\r\n"), 206),
        (
            format!("If-Match: {etag}\r\nIf-None-Match: {etag}\r\n"),
            304,
        ),
    ];
    for method in ["GET", "HEAD"] {
        for (headers, status) in &cases {
            let r = raw(server.addr, method, "/a.txt", headers);
            assert_eq!(r.status, *status, "{method} {headers:?}");
            if r.status == 412 {
                // No body, and a framing that says so.
                assert!(r.body.is_empty(), "{method} {headers:?}");
                assert_eq!(r.header("Content-Length"), Some("0"), "{headers:?}");
            }
        }
    }
    // The same on a kept-alive connection: the empty 412 ends where it says.
    let mut s = server.connect();
    write!(
        s,
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Match: \"other\"\r\n\r\n\
         HEAD /a.txt HTTP/1.1\r\nHost: t\r\nIf-Unmodified-Since: {old}\r\n\r\n\
         GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 412);
    assert_eq!(read_response_to(&mut s, true).unwrap().status, 412);
    assert_eq!(read_response(&mut s).unwrap().body, b"hello\n");
}

#[test]
fn text_says_it_is_utf8() {
    let site = sample_site("charset");
    let server = serve(&site, &[]);
    let cases = [
        ("/a.txt", "text/plain; charset=utf-8"),
        (
            "/with%20space/%C3%A9t%C3%A9.txt",
            "text/plain; charset=utf-8",
        ),
        ("/sub/", "text/html; charset=utf-8"),
        ("/sub/deeper/data.json", "application/json; charset=utf-8"),
        ("/big.bin", "application/octet-stream"),
    ];
    for (path, want) in cases {
        assert_eq!(
            get(&server, path).header("Content-Type"),
            Some(want),
            "{path}"
        );
    }
}

#[test]
fn keep_alive_across_files_and_methods() {
    let site = sample_site("keepalive");
    let server = serve(&site, &[]);
    let mut s = server.connect();
    for _ in 0..3 {
        s.write_all(
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        assert_eq!(read_response(&mut s).unwrap().body.len(), 5_000_000);
        assert_eq!(read_response(&mut s).unwrap().body, b"hello\n");
    }
    s.write_all(b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 405);
}

#[test]
fn unreadable_files_get_403() {
    let site = sample_site("forbidden");
    fs::write(site.join("secret.txt"), "secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(site.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    for dir in [
        site.path().to_path_buf(),
        site.join("sub"),
        site.join("sub/deeper"),
        site.join("with space"),
    ] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["a.txt", "big.bin", "sub/index.html"] {
        fs::set_permissions(site.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    // SAFETY: geteuid only reads the process's credentials.
    let server = if unsafe { libc::geteuid() } == 0 {
        // Root reads every file whatever its mode, so run the server as nobody.
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            common::bin(),
        ])
        .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(site.path());
        Server::spawn(cmd, &[])
    } else {
        // Anyone else is already refused by mode 000.
        serve(&site, &[])
    };
    assert_eq!(get(&server, "/secret.txt").status, 403);
    assert_eq!(get(&server, "/a.txt").status, 200);
}

/// Reads a response head byte by byte; its Content-Length.
fn read_head_length(s: &mut std::net::TcpStream) -> usize {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"))
}

#[test]
fn a_file_that_shrinks_mid_transfer_ends_the_connection_cleanly() {
    let site = sample_site("shrink");
    let whole = fs::read(site.join("big.bin")).unwrap();
    let server = serve(&site, &[]);
    let baseline = open_fds(server.pid());
    let mut s = server.connect_cramped();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_head_length(&mut s), 5_000_000);
    let mut first = vec![0u8; 1000];
    s.read_exact(&mut first).unwrap();
    // The server is now blocked on our slow reading; cut the file short.
    fs::OpenOptions::new()
        .write(true)
        .open(site.join("big.bin"))
        .unwrap()
        .set_len(100_000)
        .unwrap();
    // The server sends what the file still has (or what it had sent
    // already), then closes: we see the end of the stream well before
    // the length the head promised, not a connection that hangs.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("EOF, within the read timeout");
    let got = [first, rest].concat();
    assert!(got.len() < 5_000_000, "the connection ended early");
    // What is still in the file came as it is. (Bytes past the new end
    // that were already on their way may read as zeros: `sendfile` hands
    // the socket the page cache's pages, not a copy, and truncating
    // zeroes the tail of the page that holds the new end.)
    let kept = got.len().min(100_000);
    let first_difference = (0..kept).find(|&i| got[i] != whole[i]);
    assert_eq!(first_difference, None, "the bytes differ from the file's");
    // The server let go of the file and the socket, and is fine.
    common::wait_until(Duration::from_secs(10), || {
        open_fds(server.pid()) == baseline
    });
    assert_eq!(get(&server, "/a.txt").status, 200);
    fs::remove_file(site.join("a.txt")).unwrap();
    assert_eq!(get(&server, "/a.txt").status, 404);
}

/// Bytes of a file that are easy to tell apart at any offset.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[test]
fn downloads_are_exact_from_an_empty_file_to_a_megabyte() {
    let site = sample_site("exact");
    let sizes = [0, 1, 4096, 8192, 8193, 65_536, 1_048_576 + 7];
    for n in sizes {
        fs::write(site.join(&format!("f{n}")), pattern(n)).unwrap();
    }
    let server = serve(&site, &[]);
    let baseline = open_fds(server.pid());
    // Each on a fresh connection, then all on one kept-alive connection.
    for n in sizes {
        let r = get(&server, &format!("/f{n}"));
        assert_eq!(r.status, 200, "{n}");
        assert_eq!(r.header("Content-Length"), Some(n.to_string().as_str()));
        assert!(
            r.body == pattern(n),
            "the {n}-byte file came back different"
        );
    }
    let mut s = server.connect();
    for n in sizes {
        write!(s, "GET /f{n} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut s).expect("a response");
        assert!(
            r.body == pattern(n),
            "kept alive: the {n}-byte file differs"
        );
        write!(s, "HEAD /f{n} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response_to(&mut s, true).expect("a response to HEAD");
        assert_eq!(r.header("Content-Length"), Some(n.to_string().as_str()));
    }
    // Ranges: an offset and a length into the file, small and large.
    let big = pattern(1_048_583);
    for (range, want) in [
        ("bytes=0-0", &big[..1]),
        ("bytes=1000-9999", &big[1000..10_000]),
        ("bytes=100000-", &big[100_000..]),
        ("bytes=-70000", &big[big.len() - 70_000..]),
        ("bytes=524288-589823", &big[524_288..589_824]),
    ] {
        write!(
            s,
            "GET /f1048583 HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n\r\n"
        )
        .unwrap();
        let r = read_response(&mut s).expect("a response");
        assert_eq!(r.status, 206, "{range}");
        assert!(r.body == want, "{range}: the bytes differ");
    }
    drop(s);
    // Every file was closed as its body ended; the connections are gone.
    common::wait_until(Duration::from_secs(10), || {
        open_fds(server.pid()) == baseline
    });
}

#[test]
fn a_small_file_behind_a_big_one_waits_its_turn() {
    let site = sample_site("behind");
    let whole = fs::read(site.join("big.bin")).unwrap();
    let server = serve(&site, &[]);
    // A cramped receive buffer, so that the big body is sent over many
    // turns while the small request waits behind it.
    let mut s = server.connect_cramped();
    s.write_all(
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=4000000-\r\n\r\n\
          GET /sub/index.html HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let big = read_response(&mut s).expect("the big file");
    assert!(big.body == whole, "the big file differs");
    let small = read_response(&mut s).expect("the small file, after it");
    assert_eq!(small.body, b"hello\n");
    let range = read_response(&mut s).expect("the range, after that");
    assert_eq!(range.status, 206);
    assert!(range.body == whole[4_000_000..], "the range differs");
    let last = read_response(&mut s).expect("the last, in its place");
    assert_eq!(last.body, b"<h1>sub</h1>\n");
}

#[test]
fn a_file_is_closed_the_moment_its_body_is_sent() {
    let site = sample_site("released");
    let server = serve(&site, &[]);
    let baseline = fd_count(server.pid());
    let mut s = server.connect_cramped();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_head_length(&mut s), 5_000_000);
    // Mid-body: the connection's socket and the file.
    common::wait_until(Duration::from_secs(10), || {
        fd_count(server.pid()) == baseline + 2
    });
    let mut body = vec![0u8; 5_000_000];
    s.read_exact(&mut body).unwrap();
    // The body is sent, the connection stays open (keep-alive): only the
    // socket is left.
    common::wait_until(Duration::from_secs(10), || {
        fd_count(server.pid()) == baseline + 1
    });
    drop(s);
    common::wait_until(Duration::from_secs(10), || {
        fd_count(server.pid()) == baseline
    });
}

#[test]
fn a_hundred_clients_download_five_megabytes_with_bounded_memory() {
    let site = sample_site("hundred");
    let server = serve(&site, &[]);
    let whole = std::sync::Arc::new(fs::read(site.join("big.bin")).unwrap());
    let base = rss_kib(server.pid());
    let pid = server.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(base));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let addr = server.addr;
            let whole = whole.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                let r = read_response(&mut s).unwrap();
                assert_eq!(r.body.len(), whole.len());
                assert!(r.body == *whole, "a body differs");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a download failed");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(base);
    // Loading the file per client would take 500 MB; streaming takes a turn's
    // worth of output per connection at most.
    assert!(
        grown < 48 * 1024,
        "server grew by {grown} KiB serving 100 x 5 MB"
    );
}

#[test]
fn a_missing_directory_is_one_line_and_exit_2() {
    let out = Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            "/nonexistent/dir",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn control_characters_in_request_lines_are_escaped_in_the_log() {
    let site = sample_site("log");
    let server = Server::start(&["--dir", site.arg()]);
    let mut s = server.connect();
    s.write_all(b"GET /\x1b[31mred\x07 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 400);
    let line = server.wait_for_log("\" 400 ", Duration::from_secs(10));
    assert!(line.contains("\\x1b[31mred\\x07"), "{line}");
    assert!(
        !line.contains('\x1b') && !line.contains('\x07'),
        "raw control characters in {line:?}"
    );
}

#[test]
fn a_file_swapped_for_a_link_out_never_serves_the_secret() {
    // The served tree and, beside it, a secret. A writer in the tree swaps
    // race.txt between a plain file and a link to ../outside/secret.txt,
    // as fast as it can, while clients ask for race.txt.
    let site = sample_site("race");
    let outside = TempDir::new("race-outside");
    let secret = format!("TOP-SECRET-{}", std::process::id());
    fs::write(outside.join("secret.txt"), &secret).unwrap();
    let target = format!(
        "../{}/secret.txt",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    fs::write(site.join("race.txt"), "just a file\n").unwrap();
    let server = serve(&site, &[]);
    assert_eq!(get(&server, "/race.txt").body, b"just a file\n");

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (dir, stop) = (site.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // rename(2) replaces the name in one step, so race.txt is
                // always something: a file or a link.
                let _ = fs::write(dir.join(".file"), "just a file\n");
                let _ = fs::rename(dir.join(".file"), dir.join("race.txt"));
                let _ = std::os::unix::fs::symlink(&target, dir.join(".link"));
                let _ = fs::rename(dir.join(".link"), dir.join("race.txt"));
                swaps += 1;
            }
            swaps
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (addr, secret) = (server.addr, secret.clone());
            std::thread::spawn(move || {
                let (mut leaks, mut files, mut others) = (0u64, 0u64, 0u64);
                let mut s = None;
                while Instant::now() < deadline {
                    let conn = s.get_or_insert_with(|| {
                        let c = std::net::TcpStream::connect(addr).unwrap();
                        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                        c
                    });
                    let sent = conn.write_all(b"GET /race.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                    let Some(r) = sent.ok().and_then(|_| read_response(conn)) else {
                        s = None; // closed: a new connection next time
                        continue;
                    };
                    if String::from_utf8_lossy(&r.body).contains(&secret) {
                        leaks += 1;
                    } else if r.status == 200 && r.body == b"just a file\n" {
                        files += 1;
                    } else {
                        assert!([404, 503].contains(&r.status), "status {}", r.status);
                        others += 1;
                    }
                }
                (leaks, files, others)
            })
        })
        .collect();
    let (mut leaks, mut files, mut others) = (0, 0, 0);
    for c in clients {
        let (l, f, o) = c.join().expect("a client failed");
        (leaks, files, others) = (leaks + l, files + f, others + o);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{swaps} swaps: {files} files, {others} refusals, {leaks} secrets");
    assert_eq!(leaks, 0, "the secret was served {leaks} times");
    assert!(files > 0, "the file itself was never served");
    assert!(swaps > 0);
}

#[test]
fn what_the_client_asks_wrongly_is_4xx_not_500() {
    let site = sample_site("mistakes");
    std::os::unix::fs::symlink("loop-b", site.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", site.join("loop-b")).unwrap();
    let long_name = "n".repeat(255);
    fs::write(site.join(&long_name), "long\n").unwrap();
    for extra in [&[][..], &["--follow-symlinks"][..]] {
        let server = serve(&site, extra);
        let cases = [
            ("/loop-a".to_string(), 404),
            ("/loop-a/x".to_string(), 404),
            (format!("/{long_name}"), 200),
            (format!("/{}", "n".repeat(256)), 404),
            (format!("/sub/{}", "n".repeat(300)), 404),
            ("/a".repeat(3000), 414),
            (format!("/{}", vec!["n".repeat(255); 17].join("/")), 414),
            ("/a.txt/".to_string(), 404),
            ("/a.txt/.".to_string(), 404),
            ("/a.txt/./".to_string(), 404),
            ("/a.txt/%2e".to_string(), 404),
            ("/a.txt/x".to_string(), 404),
            ("/sub/index.html/".to_string(), 404),
        ];
        for (path, status) in cases {
            let r = get(&server, &path);
            assert_eq!(r.status, status, "{extra:?} {:.40}...", path);
        }
        let r = raw(server.addr, "GET", "/a.txt", "Range: BYTES=0-1\r\n");
        assert_eq!(r.status, 206, "the range unit is case-insensitive");
        assert_eq!(r.body, b"he");
        assert_eq!(r.header("Content-Range"), Some("bytes 0-1/6"));
    }
}

/// Sets the soft open-files limit of process `pid`; returns the old limits.
fn set_fd_limit(pid: u32, soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the first prlimit writes the current limits into `old`, the
    // second reads `new`; both are live structs, and a null pointer means
    // "not this one".
    unsafe {
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0
        );
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
            0,
            "prlimit: {}",
            std::io::Error::last_os_error()
        );
    }
    old
}

#[test]
fn out_of_descriptors_is_503_with_retry_after() {
    let site = sample_site("emfile");
    let server = serve(&site, &[]);
    let open = open_fds(server.pid());
    assert_eq!(get(&server, "/a.txt").status, 200);
    // That connection's descriptor is released once the server has closed
    // it, which may be a moment after its answer.
    common::wait_until(Duration::from_secs(10), || open_fds(server.pid()) == open);
    // Leave the server room for exactly one more descriptor: the lowest
    // free number. The next connection's socket takes it, so opening the
    // file it asks for finds none (EMFILE).
    let second_free = (0..).filter(|n| !open.contains(n)).nth(1).unwrap();
    let old = set_fd_limit(server.pid(), second_free as u64);
    let r = get(&server, "/a.txt");
    set_fd_limit(server.pid(), old.rlim_cur);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    // With descriptors back, the same request is served again.
    common::wait_until(Duration::from_secs(10), || {
        get(&server, "/a.txt").status == 200
    });
}

/// `path` resolved against the page at `base` (a directory, ending in `/`),
/// as a browser would for the links of a listing.
fn resolve_href(base: &str, href: &str) -> String {
    match href {
        "../" => {
            let parent = base.trim_end_matches('/');
            format!("{}/", &parent[..parent.rfind('/').unwrap_or(0)])
        }
        _ if href.starts_with('/') => href.to_string(),
        _ => format!("{base}{href}"),
    }
}

#[test]
fn every_link_in_a_listing_opens_and_what_cannot_is_marked() {
    let site = sample_site("clickable");
    fs::write(site.join("back\\slash.txt"), "x\n").unwrap();
    std::os::unix::fs::symlink("nothing", site.join("dangling")).unwrap();
    std::os::unix::fs::symlink("loop-b", site.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", site.join("loop-b")).unwrap();
    std::os::unix::fs::symlink("../../..", site.join("sub/way-up")).unwrap();
    let fifo = std::ffi::CString::new(site.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that lives through the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let server = serve(&site, &[]);
    // Every listing, every link on it, as a user would click through.
    let mut pages = vec!["/".to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(page) = pages.pop() {
        if !seen.insert(page.clone()) {
            continue;
        }
        let r = get(&server, &page);
        assert_eq!(r.status, 200, "{page}");
        let text = r.text();
        if !text.contains("Directory listing for") {
            continue;
        }
        // python's html.parser reads the same links our test reads.
        let parsed = hrefs_by_html_parser(&text);
        let ours: Vec<String> = text
            .split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect();
        assert_eq!(parsed, ours, "{page}");
        for href in parsed {
            let target = resolve_href(&page, &href);
            let r = get(&server, &target);
            assert!(
                r.status == 200 || r.status == 301,
                "{page}: {href} -> {target} is {}",
                r.status
            );
            if target.ends_with('/') && target.starts_with(&page) && target != "/_/" {
                pages.push(target);
            }
        }
    }
    assert!(seen.contains("/with%20space/"), "{seen:?}");
    assert!(seen.contains("/dir-abs-in/"), "{seen:?}");
    // What a click could not open is there, as text, with the reason.
    let root = get(&server, "/").text();
    for (shown, why) in [
        ("back\\slash.txt", "backslash"),
        ("link-out@", "outside"),
        ("dangling@", "link to nothing"),
        ("loop-a@", "loop"),
        ("fifo", "not a file or a directory"),
    ] {
        let row = rows(&root)
            .into_iter()
            .find(|r| r.contains(&format!("<td>{shown} <small>")))
            .unwrap_or_else(|| panic!("no row for {shown}: {root}"));
        assert!(!row.contains("href"), "{row}");
        assert!(row.contains(why), "{row}");
    }
    let sub = get(&server, "/sub/").text();
    // `sub` has an index.html: its listing is never shown.
    assert!(!sub.contains("way-up"));
}

#[test]
fn a_folder_named_underscore_is_named_at_start_and_in_the_listing() {
    let site = sample_site("underscore");
    fs::create_dir_all(site.join("_")).unwrap();
    fs::write(site.join("_/notes.txt"), "notes\n").unwrap();
    // Only a directory at the root is hidden: a file `_`, or `_` below, is not.
    fs::create_dir_all(site.join("with space/_")).unwrap();
    fs::write(site.join("with space/_/deep.txt"), "deep\n").unwrap();
    let server = serve(&site, &[]);
    let line = server.wait_for_log("is not served", Duration::from_secs(10));
    assert!(line.contains("WARN") && line.contains("/_/"), "{line}");
    let root = get(&server, "/").text();
    let row = rows(&root)
        .into_iter()
        .find(|r| r.contains("<td>_/ <small>"))
        .unwrap_or_else(|| panic!("no row for _/: {root}"));
    assert!(!row.contains("href") && row.contains("hidden"), "{row}");
    // `/_/` stays the live page, and says nothing of the folder's files.
    assert!(get(&server, "/_/").text().contains("EventSource"));
    assert_eq!(get(&server, "/_/notes.txt").status, 404);
    assert_eq!(get(&server, "/with%20space/_/deep.txt").body, b"deep\n");
    // Without such a folder, no warning.
    let plain = sample_site("no-underscore");
    let server = serve(&plain, &[]);
    server.wait_for_log("files are opened", Duration::from_secs(10));
    assert!(!server.stderr().iter().any(|l| l.contains("is not served")));
}

#[test]
fn robots_txt_keeps_crawlers_out_of_the_live_pages() {
    let bare = Server::start(&["--quiet"]);
    let site = sample_site("robots");
    let served = serve(&site, &[]);
    for server in [&bare, &served] {
        let r = server.get("/robots.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
        let text = r.text();
        assert!(
            text.lines().any(|l| l == "User-agent: *")
                && text.lines().any(|l| l == "Disallow: /_/"),
            "{text}"
        );
        let head = raw(server.addr, "HEAD", "/robots.txt", "");
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("Content-Length"),
            Some(r.body.len().to_string().as_str())
        );
    }
    // No page links the endless stream in its HTML.
    for path in ["/", "/_/", "/_/about"] {
        let page = bare.get(path).text();
        assert!(!page.contains("href=\"/_/events\""), "{path}: {page}");
    }
    // A directory's own robots.txt wins.
    fs::write(site.join("robots.txt"), "User-agent: *\nAllow: /\n").unwrap();
    assert_eq!(served.get("/robots.txt").body, b"User-agent: *\nAllow: /\n");
}

#[test]
fn a_mirror_of_the_server_finishes() {
    if Command::new("wget").arg("--version").output().is_err() {
        return privilege::skip(this_test!(), "wget (apt-get install wget)");
    }
    let site = sample_site("mirror");
    fs::remove_file(site.join("big.bin")).unwrap();
    let bare = Server::start(&["--quiet"]);
    let served = serve(&site, &[]);
    let runs = [
        (&bare, "robots=on"),
        // A crawler told to ignore robots.txt finds no link to the stream.
        (&bare, "robots=off"),
        (&served, "robots=on"),
        (&served, "robots=off"),
    ];
    for (i, (server, robots)) in runs.into_iter().enumerate() {
        let into = TempDir::new(&format!("mirror-{i}"));
        let url = format!("http://{}/", server.addr);
        // `timeout` ends a crawl that hangs, as one on the event stream did.
        let out = Command::new("timeout")
            .args([
                "60", "wget", "-q", "-r", "-np", "-l", "2", "-e", robots, "-P",
            ])
            .arg(into.path())
            .arg(&url)
            .output()
            .expect("timeout and wget");
        let code = out.status.code();
        assert!(
            code.is_some() && code != Some(124),
            "{url} with {robots}: the mirror did not finish ({code:?})"
        );
        let mirrored = into.join(&server.addr.to_string());
        assert!(mirrored.join("index.html").is_file(), "{robots}");
        assert!(
            !mirrored.join("_/events").exists(),
            "{robots}: the crawler opened the event stream"
        );
        if robots == "robots=on" {
            assert!(mirrored.join("robots.txt").is_file(), "asked first");
            assert!(!mirrored.join("_").exists(), "and kept out of /_/");
        }
        if std::ptr::eq(server, &served) {
            assert_eq!(fs::read(mirrored.join("a.txt")).unwrap(), b"hello\n");
            assert!(mirrored.join("with space/été.txt").is_file(), "{robots}");
            assert_eq!(code, Some(0), "every link of the listings opened");
        }
    }
}
