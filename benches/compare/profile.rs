//! Where a server's user-space instructions go, from a callgrind profile.
//!
//! `callgrind_annotate` lists the instructions spent in each function,
//! naming the source file each piece came from: code inlined from
//! `src/http/parse.rs` into another function still says `parse.rs`. So
//! fivetuple's own code is sorted into parts by its file, and inlined
//! standard-library code (slice iterators, `memchr`, UTF-8 checks) by the
//! function it was inlined into. The parts below follow the path of one
//! request, and the floor's code lands in the same parts where it does
//! the same job (its event loop is "the event loop").

use std::path::Path;
use std::process::Command;

/// The parts, in the order a request meets them.
pub const PARTS: [&str; 7] = [
    "the event loop (reactor, mio, system call wrappers)",
    "the session: the loop over requests, buffers (http/session.rs; the floor's `answer`)",
    "httparse",
    "fivetuple's checks around httparse (http/parse.rs)",
    "routing and writing the answer (routes.rs, response.rs)",
    "memcpy",
    "the rest (std, libc, start and stop)",
];

/// Where to look for a part's name: the source file a piece of code came
/// from, or the function it runs in.
enum Place {
    File(&'static str),
    Function(&'static str),
}

use Place::{File, Function};

/// The first rule that matches decides. The floor's `answer` (its loop
/// over the requests of a read) comes before the rule for its file, which
/// is otherwise all event loop.
const RULES: [(Place, usize); 32] = [
    (Function("floor_server::answer"), 1),
    (File("httparse-"), 2),
    (File("src/http/session.rs"), 1),
    (File("src/http/parse.rs"), 3),
    (File("src/http/routes.rs"), 4),
    (File("src/http/response.rs"), 4),
    (File("src/http/mod.rs"), 1),
    (File("src/reactor"), 0),
    (File("src/connection"), 0),
    (File("src/timer.rs"), 0),
    (File("mio-"), 0),
    (File("floor_server.rs"), 0),
    (File("tokio_server.rs"), 0),
    (File("tokio-"), 0),
    (Function("httparse::"), 2),
    (Function("fivetuple::http::parse::"), 3),
    (Function("fivetuple::http::routes::"), 4),
    (Function("fivetuple::http::response::"), 4),
    (Function("fivetuple::http::"), 1),
    (Function("fivetuple::reactor::"), 0),
    (Function("fivetuple::connection::"), 0),
    (Function("fivetuple::timer::"), 0),
    (Function("mio::"), 0),
    (Function("floor_server::"), 0),
    (Function("tokio_server::"), 0),
    (Function("tokio::"), 0),
    (Function("memcpy"), 5),
    (Function("memmove"), 5),
    (Function("epoll_wait"), 0),
    (Function("__libc_read"), 0),
    (Function("__libc_write"), 0),
    (Function("accept4"), 0),
];

/// Which part a function (or a piece inlined into it) belongs to.
fn part_of(file: &str, function: &str) -> &'static str {
    let found = RULES.iter().find(|(place, _)| match place {
        File(f) => file.contains(f),
        Function(f) => function.contains(f),
    });
    PARTS[found.map_or(PARTS.len() - 1, |(_, part)| *part)]
}

/// Instructions per request by part, for the profile in `file` of a run
/// that served `requests`; empty if `callgrind_annotate` is missing.
pub fn parts(file: &Path, requests: u64) -> Vec<(String, f64)> {
    let Ok(out) = Command::new("callgrind_annotate")
        .args(["--inclusive=no", "--threshold=100", "--auto=no"])
        .arg(file)
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sums = [0u64; PARTS.len()];
    for line in text.lines() {
        let Some((count, place)) = function_line(line) else {
            continue;
        };
        let (file, function) = place.split_once(':').unwrap_or(("", place));
        let part = part_of(file, function);
        let i = PARTS
            .iter()
            .position(|p| *p == part)
            .unwrap_or(PARTS.len() - 1);
        sums[i] += count;
    }
    let n = requests.max(1) as f64;
    PARTS
        .iter()
        .zip(sums)
        .filter(|(_, sum)| *sum > 0)
        .map(|(part, sum)| (part.to_string(), sum as f64 / n))
        .collect()
}

/// `  16,906,749 ( 5.72%)  file:function [object]` → (16906749, "file:function").
fn function_line(line: &str) -> Option<(u64, &str)> {
    let line = line.trim_start();
    let (count, rest) = line.split_once(' ')?;
    let count: u64 = count.replace(',', "").parse().ok()?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('(')?.split_once(')')?.1.trim();
    if rest.starts_with("PROGRAM TOTALS") || rest.is_empty() {
        return None;
    }
    let place = rest.rsplit_once(" [").map_or(rest, |(p, _)| p);
    Some((count, place))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_and_sorted_into_parts() {
        let line = " 15,157,584 ( 5.13%)  src/http/parse.rs:fivetuple::http::parse::valid_host [/x/fivetuple]";
        let (count, place) = function_line(line).unwrap();
        assert_eq!(count, 15_157_584);
        let (file, function) = place.split_once(':').unwrap();
        assert_eq!(part_of(file, function), PARTS[3]);
        let inlined = "/rustc/abc/library/core/src/str/pattern.rs:fivetuple::http::routes::path_of";
        let (file, function) = inlined.split_once(':').unwrap();
        assert_eq!(part_of(file, function), PARTS[4]);
        assert!(function_line("295,732,506 (100.0%)  PROGRAM TOTALS").is_none());
    }
}
