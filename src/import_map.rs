//! A test that keeps the crate's modules free of circles.
//!
//! The modules are meant to stack, each built on the ones below it: `http`
//! knows nothing of the reactor that drives it nor of the directory it
//! serves, `table` nothing of the socket whose rows it shows, and so on up
//! to the reactor. Two modules that each use the other (directly, or the
//! long way round through others) are one idea in two places: neither can
//! be read, tested or changed alone. The compiler allows such a circle;
//! this test does not.
//!
//! It reads every file under `src/` as text, blanks out comments and
//! string literals, and collects each `crate::NAME` path (`use
//! crate::{a, b}` names both). A file belongs to the top-level module its
//! path begins with (`src/http/routes.rs` is `http`, `src/table.rs` is
//! `table`); the crate roots, `lib.rs` and `main.rs`, are left out, and so
//! is a name that is no top-level module. That makes a graph of modules,
//! and its circles are its strongly connected components (Tarjan's
//! algorithm): sets in which every module reaches every other. The test
//! fails naming each circle, with the line behind each of its steps.
//!
//! It reads `crate::` paths only. A `super::super::` that climbs to the
//! crate root would pass it by; the code says `crate::` for that instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Circles allowed, each as the set of its modules: none. Anything that
/// forms a circle, or a known one that grows, fails the test; so does an
/// entry here that is no circle any more, so that none outlives its reason.
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// The only modules of this crate that `http` may use: plain data that
/// does not use `http` back. The protocol stays a leaf that runs alone (in
/// the fuzzer, the benchmarks, its own tests); the server reaches it, never
/// the other way round, except through its traits (`Host`, `FileService`).
const HTTP_MAY_USE: &[&str] = &["table"];

/// Where one module names another: a file and a line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    file: String,
    line: usize,
}

/// Module to module, with the first place each use was found.
type Graph = BTreeMap<String, BTreeMap<String, Step>>;

/// Every `.rs` file under `dir`, as its path below `src` and its text.
fn read_sources(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(src, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let below = path.strip_prefix(src).expect("a file below src");
            out.push((below.to_string_lossy().into_owned(), text));
        }
    }
}

/// The top-level module a file below `src/` belongs to; `None` for the
/// crate roots.
fn top_module(path: &str) -> Option<&str> {
    let first = path.split('/').next()?;
    match first {
        "lib.rs" | "main.rs" => None,
        _ => Some(first.strip_suffix(".rs").unwrap_or(first)),
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with every comment and string or character literal blanked out
/// (newlines kept, so lines keep their numbers): what is left is code.
fn code_only(text: &str) -> String {
    let s: Vec<char> = text.chars().collect();
    let at = |i: usize| s.get(i).copied();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let prev_is_ident = i > 0 && is_ident(s[i - 1]);
        if c == '/' && at(i + 1) == Some('/') {
            while i < s.len() && s[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if s[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
        } else if let Some((open, hashes)) = string_start(&s, i).filter(|_| !prev_is_ident) {
            // A string: `"…"`, `b"…"`, `c"…"`, or raw, `r#"…"#`.
            for _ in i..open + 1 {
                out.push(' ');
            }
            i = open + 1;
            while i < s.len() {
                match hashes {
                    None if s[i] == '\\' => {
                        out.push(' ');
                        i += 1;
                    }
                    None if s[i] == '"' => break,
                    Some(n) if s[i] == '"' && (1..=n).all(|k| at(i + k) == Some('#')) => {
                        out.push_str(&" ".repeat(n));
                        i += n;
                        break;
                    }
                    _ => {}
                }
                if let Some(&c) = s.get(i) {
                    out.push(blank(c));
                }
                i += 1;
            }
            out.push(' '); // the closing quote
            i += 1;
        } else if c == '\'' {
            // A character literal (`'"'`, `'\''`), or a lifetime (`'a`),
            // which is code.
            let end = match at(i + 1) {
                Some('\\') => (i + 3..s.len()).find(|&j| s[j] == '\''),
                Some(_) if at(i + 2) == Some('\'') => Some(i + 2),
                _ => None,
            };
            match end {
                Some(end) => {
                    out.extend(s[i..=end].iter().map(|&c| blank(c)));
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// If a string literal starts at `i`: where its opening quote is, and for
/// a raw string how many `#` close it.
fn string_start(s: &[char], i: usize) -> Option<(usize, Option<usize>)> {
    let mut j = i;
    if matches!(s.get(j), Some('b' | 'c')) {
        j += 1;
    }
    let raw = s.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    let mut hashes = 0;
    while raw && s.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    match s.get(j) {
        Some('"') => Some((j, raw.then_some(hashes))),
        _ => None,
    }
}

/// Each name a `crate::` path in `code` begins with, and its line: the
/// `a` of `crate::a::b`, and `a` and `b` of `crate::{a::x, b}`.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let s: Vec<char> = code.chars().collect();
    // The line of each character.
    let lines: Vec<usize> = s
        .iter()
        .scan(1, |line, &c| {
            let this = *line;
            *line += usize::from(c == '\n');
            Some(this)
        })
        .collect();
    let mut found = Vec::new();
    let mut i = 0;
    let skip_space = |mut j: usize| {
        while s.get(j).is_some_and(|c| c.is_whitespace()) {
            j += 1;
        }
        j
    };
    let ident_at = |j: usize| -> String { s[j..].iter().take_while(|&&c| is_ident(c)).collect() };
    while i < s.len() {
        let starts_word = i == 0 || !is_ident(s[i - 1]);
        if !(starts_word && s[i..].starts_with(&['c', 'r', 'a', 't', 'e'])) {
            i += 1;
            continue;
        }
        let mut j = skip_space(i + 5);
        if !(s.get(j) == Some(&':') && s.get(j + 1) == Some(&':')) {
            i += 5;
            continue;
        }
        j = skip_space(j + 2);
        if s.get(j) == Some(&'{') {
            // A group: the first name of each item at its top level.
            let mut depth = 0;
            let mut item_start = true;
            while let Some(&c) = s.get(j) {
                match c {
                    '{' => {
                        depth += 1;
                        item_start = depth == 1;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && is_ident(c) => {
                        found.push((ident_at(j), lines[j]));
                        item_start = false;
                    }
                    _ => {}
                }
                j += 1;
            }
        } else {
            let name = ident_at(j);
            if !name.is_empty() {
                found.push((name, lines[j]));
            }
        }
        i = j.max(i + 1);
    }
    found
}

/// The graph between the top-level modules of `files` (paths below `src/`
/// and their text).
fn graph_of(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<&str> = files.iter().filter_map(|(p, _)| top_module(p)).collect();
    let mut graph = Graph::new();
    for (path, text) in files {
        let Some(from) = top_module(path) else {
            continue;
        };
        let uses = graph.entry(from.to_string()).or_default();
        for (to, line) in crate_paths(&code_only(text)) {
            if to != from && modules.contains(to.as_str()) {
                uses.entry(to).or_insert_with(|| Step {
                    file: format!("src/{path}"),
                    line,
                });
            }
        }
    }
    graph
}

/// The graph of this crate's `src/`.
fn this_crate() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    assert!(files.len() > 10, "read only {} files", files.len());
    graph_of(&files)
}

/// The circles of `graph`: its strongly connected components of more
/// than one module, each sorted, found with Tarjan's algorithm.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    #[derive(Default)]
    struct Search<'g> {
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(graph: &'g Graph, at: &'g str, search: &mut Search<'g>) {
        let index = search.index.len();
        search.index.insert(at, index);
        search.low.insert(at, index);
        search.stack.push(at);
        search.on_stack.insert(at);
        for to in graph.get(at).into_iter().flat_map(|uses| uses.keys()) {
            let to = to.as_str();
            if !search.index.contains_key(to) {
                visit(graph, to, search);
                let low = search.low[at].min(search.low[to]);
                search.low.insert(at, low);
            } else if search.on_stack.contains(to) {
                let low = search.low[at].min(search.index[to]);
                search.low.insert(at, low);
            }
        }
        if search.low[at] == search.index[at] {
            let mut component = Vec::new();
            while let Some(member) = search.stack.pop() {
                search.on_stack.remove(member);
                component.push(member.to_string());
                if member == at {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                search.found.push(component);
            }
        }
    }
    let mut search = Search::default();
    for module in graph.keys() {
        if !search.index.contains_key(module.as_str()) {
            visit(graph, module, &mut search);
        }
    }
    search.found.sort();
    search.found
}

/// A circle in words: its modules, and every step between them with the
/// line that makes it.
fn describe(graph: &Graph, circle: &[String]) -> String {
    let mut text = circle.join(" ↔ ");
    for from in circle {
        for (to, step) in &graph[from] {
            if circle.contains(to) {
                text += &format!("\n    {from} -> {to}  ({}:{})", step.file, step.line);
            }
        }
    }
    text
}

/// What is wrong with the circles of `graph`, given the known ones.
fn circle_faults(graph: &Graph, known: &[&[&str]]) -> Vec<String> {
    let found = circles(graph);
    let mut faults: Vec<String> = found
        .iter()
        .filter(|circle| !known.iter().any(|k| same_set(k, circle)))
        .map(|circle| format!("a circle: {}", describe(graph, circle)))
        .collect();
    for k in known {
        if !found.iter().any(|circle| same_set(k, circle)) {
            faults.push(format!(
                "{} is no circle any more: take it off KNOWN_CIRCLES",
                k.join(" ↔ ")
            ));
        }
    }
    faults
}

fn same_set(known: &[&str], circle: &[String]) -> bool {
    let known: BTreeSet<&str> = known.iter().copied().collect();
    let circle: BTreeSet<&str> = circle.iter().map(String::as_str).collect();
    known == circle
}

#[test]
fn src_has_no_circles_but_the_known_one() {
    let graph = this_crate();
    let faults = circle_faults(&graph, KNOWN_CIRCLES);
    assert!(faults.is_empty(), "\n{}\n", faults.join("\n"));
}

#[test]
fn http_uses_only_plain_data() {
    let graph = this_crate();
    let uses = graph.get("http").expect("src/http/ is read");
    let beyond: Vec<String> = uses
        .iter()
        .filter(|(to, _)| !HTTP_MAY_USE.contains(&to.as_str()))
        .map(|(to, step)| format!("http -> {to}  ({}:{})", step.file, step.line))
        .collect();
    assert!(beyond.is_empty(), "\n{}\n", beyond.join("\n"));
}

#[test]
fn comments_and_literals_name_no_module() {
    let text = r##"
        // crate::a in a line comment
        /// crate::b in a doc comment
        /* crate::c /* nested */ crate::d */
        let s = "crate::e \" crate::f";
        let r = r#"crate::g " crate::h"#;
        let b = b"crate::i";
        let quote = '"'; use crate::real_one::X;
        fn f<'a>(x: &'a str) -> &'a str { crate::two(x) }
        pub(crate) use crate::{three::Y, four, five::{Z, W}};
        let escaped = '\''; let not = my_crate::six;
    "##;
    let names: Vec<String> = crate_paths(&code_only(text))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["real_one", "two", "three", "four", "five"]);
    let lines: Vec<usize> = crate_paths(&code_only(text))
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    assert_eq!(lines, [8, 9, 10, 10, 10]);
}

#[test]
fn a_circle_is_found_and_named_whatever_its_length() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = [
        file("lib.rs", "pub mod a; use crate::b::X;"),
        file("a.rs", "use crate::b::X;"),
        file("b/mod.rs", "mod inner;"),
        file("b/inner.rs", "use crate::c::Y;\nuse crate::b::Z;"),
        file("c.rs", "fn f() { crate::a::g() }"),
        file("d.rs", "use crate::a::X; // crate::d"),
        file("e.rs", "use crate::f::X; use crate::not_a_module::Y;"),
        file("f.rs", "use crate::e::X;"),
    ];
    let graph = graph_of(&files);
    assert_eq!(
        circles(&graph),
        [vec!["a", "b", "c"], vec!["e", "f"]],
        "{graph:?}"
    );
    let step = &graph["b"]["c"];
    assert_eq!((step.file.as_str(), step.line), ("src/b/inner.rs", 1));
    // One known circle is allowed; the other is named with its steps.
    let faults = circle_faults(&graph, &[&["f", "e"]]);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(faults[0].contains("a ↔ b ↔ c"), "{}", faults[0]);
    assert!(faults[0].contains("c -> a  (src/c.rs:1)"), "{}", faults[0]);
    // A known circle that is gone is a fault too, and so is one that grew.
    let faults = circle_faults(&graph, &[&["a", "b", "c"], &["e", "f"], &["x", "y"]]);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(faults[0].contains("x ↔ y is no circle"), "{}", faults[0]);
    assert_eq!(circle_faults(&graph, &[&["a", "b"], &["e", "f"]]).len(), 2);
}
