//! "In short": the few lines at the top of docs/benchmarks.md, each a
//! headline figure of this run, so that a reader who stops there has read
//! what the tables below say. Every figure comes from the run's `Results`;
//! a line whose figures the run did not take is left out.

use std::fmt::Write as _;

use crate::plan::ScenarioId::{
    self, Churn, File1m, File4k, File64k, KeepAlive256, KeepAlive50, Pipelined16,
};
use crate::plan::SubjectId::{self, Floor, Mio, Nginx, Tokio, TokioMt};
use crate::results::{ratio, Bound, Results, Run};
use crate::targets::{check, check_bound, check_quota_scaling, Verdict};

/// The section, from `## In short` to the line before the charts.
pub fn in_short(results: &Results) -> String {
    let lines: Vec<String> = [
        requests(results),
        cpu(results),
        syscalls(results),
        memory(results),
        files(results),
        under_quota(results),
        scaling(results),
    ]
    .into_iter()
    .flatten()
    .collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut p = String::from("## In short\n\n");
    let runs: Vec<&Run> = results
        .throughput
        .iter()
        .filter(|m| m.subject != TokioMt)
        .map(|m| &m.median)
        .collect();
    let by_wrk = runs.iter().filter(|r| r.bound() == Bound::Client).count();
    if by_wrk * 2 > runs.len() {
        p.push_str(
            "On two cores, the servers on one and wrk on the other, where wrk is usually the \
             bottleneck (the server-bound figures turn that round with a CPU quota):\n\n",
        );
    }
    for line in lines {
        let _ = writeln!(p, "- {line}");
    }
    let plain: Vec<Option<bool>> = check(results)
        .iter()
        .chain(&check_bound(results))
        .map(|v: &Verdict| v.met)
        .chain(check_quota_scaling(results).iter().map(|v| v.met))
        .collect();
    let met = plain.iter().filter(|m| **m == Some(true)).count();
    let judged = plain.iter().filter(|m| m.is_some()).count();
    let _ = write!(
        p,
        "\n{met} of the {judged} targets this run could judge were met; the Targets section and the \
         server-bound sections list them, met or missed.\n\n"
    );
    p
}

fn rps(results: &Results, sc: ScenarioId, s: SubjectId) -> Option<f64> {
    results.run(sc, s).map(|r| r.rps)
}

fn cpu_us(results: &Results, sc: ScenarioId, s: SubjectId) -> Option<f64> {
    results.run(sc, s).map(Run::cpu_us)
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn requests(results: &Results) -> Option<String> {
    let mio = rps(results, KeepAlive50, Mio)?;
    let mut each = vec![format!("fivetuple {}", thousands(mio))];
    for (s, name) in [(Floor, "the floor"), (Tokio, "tokio"), (Nginx, "nginx")] {
        if let Some(v) = rps(results, KeepAlive50, s) {
            let mut item = format!("{name} {}", thousands(v));
            if s == Tokio {
                let _ = write!(item, " (fivetuple {:.2}× of it)", mio / v);
            }
            each.push(item);
        }
    }
    Some(format!(
        "**Requests per second** at 50 keep-alive connections: {}.",
        each.join(", ")
    ))
}

fn cpu(results: &Results) -> Option<String> {
    let floor = ratio(
        cpu_us(results, KeepAlive50, Mio),
        cpu_us(results, KeepAlive50, Floor),
    )?;
    let mut line = format!("**CPU per request**: {floor:.2}× the floor's");
    if let Some(p) = ratio(
        cpu_us(results, Pipelined16, Mio),
        cpu_us(results, Pipelined16, Floor),
    ) {
        let _ = write!(line, " ({p:.2}× pipelined)");
    }
    if let Some(t) = ratio(
        cpu_us(results, KeepAlive50, Mio),
        cpu_us(results, KeepAlive50, Tokio),
    ) {
        let _ = write!(line, ", {t:.2}× tokio's");
    }
    if let Some(n) = ratio(
        cpu_us(results, KeepAlive50, Nginx),
        cpu_us(results, KeepAlive50, Mio),
    ) {
        let _ = write!(line, "; nginx spent {n:.2}× fivetuple's");
    }
    line.push('.');
    Some(line)
}

fn syscalls(results: &Results) -> Option<String> {
    let ka = results.syscalls(KeepAlive50, Mio)?;
    let mut line = format!("**System calls**: {ka:.2} per keep-alive request");
    if let Some(p) = results.syscalls(Pipelined16, Mio) {
        let _ = write!(line, ", {p:.2} pipelined");
    }
    if let Some(c) = results.syscalls(Churn, Mio) {
        let _ = write!(line, "; {c:.2} per churned connection");
        if let Some(f) = results.syscalls(Churn, Floor) {
            let _ = write!(line, ", against the floor's {f:.2}");
        }
    }
    line.push('.');
    Some(line)
}

fn memory(results: &Results) -> Option<String> {
    let mio = results.held(Mio)?;
    let mut line = format!(
        "**Memory**: {} bytes per held idle connection",
        thousands(mio.bytes_per_connection)
    );
    if let Some(t) = results.held(Tokio) {
        let _ = write!(
            line,
            ", against tokio's {}",
            thousands(t.bytes_per_connection)
        );
    }
    line.push('.');
    Some(line)
}

fn files(results: &Results) -> Option<String> {
    let against = |sc| {
        let (m, n) = (results.run(sc, Mio)?, results.run(sc, Nginx)?);
        Some((m.rps / n.rps.max(1e-9), m.cpu_us() / n.cpu_us().max(1e-9)))
    };
    let (r4, c4) = against(File4k)?;
    let mut line = format!(
        "**Static files** go out with `sendfile`: {r4:.2}× nginx's requests/s at 4 KiB with \
         {c4:.2}× its CPU per request"
    );
    if let Some((r, c)) = against(File64k) {
        let _ = write!(line, "; {r:.2}× and {c:.2}× at 64 KiB");
    }
    let threads = results.cores.wrk_threads().max(1) as f64;
    let with_wrk = |r: &Run| r.cpu_us() + r.client_busy * threads / r.rps.max(1e-9) * 1e6;
    if let (Some(m), Some(n)) = (results.run(File1m, Mio), results.run(File1m, Nginx)) {
        let _ = write!(
            line,
            "; at 1 MiB {:.2}× its requests/s, with server and wrk CPU per request together \
             {:.2}× nginx's (the comparable figure on loopback)",
            m.rps / n.rps.max(1e-9),
            with_wrk(m) / with_wrk(n).max(1e-9)
        );
    }
    line.push('.');
    Some(line)
}

fn under_quota(results: &Results) -> Option<String> {
    let sb = results.server_bound.as_ref()?;
    let versus = |sc, other| {
        let (m, o) = (sb.run(sc, Mio)?, sb.run(sc, other)?);
        (m.bound() != Bound::Client && o.bound() != Bound::Client && o.rps > 0.0)
            .then(|| m.rps / o.rps)
    };
    let each = |sc| -> Option<String> {
        let parts: Vec<String> = [Floor, Tokio, Nginx]
            .iter()
            .filter_map(|&o| Some(format!("{:.2}× {}", versus(sc, o)?, o.possessive())))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    let ka = each(KeepAlive50)?;
    let mut line = format!(
        "**Under a CPU quota** (each server held to the same share of its core, so that wrk is \
         the faster side; simulated): requests/s at keep-alive 50 {ka}"
    );
    if let Some(churn) = each(Churn) {
        let _ = write!(line, "; in churn {churn}");
    }
    if sb.noise().loaded() {
        line.push_str(" (taken under load: not to be trusted)");
    }
    line.push('.');
    Some(line)
}

fn scaling(results: &Results) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(wb) = &results.workers_bound {
        for sc in [KeepAlive256, Churn] {
            let speed: Vec<String> = [2, 4, 8]
                .iter()
                .filter_map(|&n| {
                    let p = wb.point(sc, n, Mio)?;
                    (p.median.bound() != Bound::Client)
                        .then(|| Some(format!("{n} workers {:.2}×", wb.speed_up(sc, n, Mio)?)))?
                })
                .collect();
            if !speed.is_empty() {
                parts.push(format!(
                    "{} {}",
                    if sc == Churn { "churn" } else { "keep-alive" },
                    speed.join(", ")
                ));
            }
        }
    }
    let quota = (!parts.is_empty()).then(|| {
        format!(
            "each worker thread under its own CPU quota (simulated), fivetuple's speed-up over \
             one worker: {}",
            parts.join("; ")
        )
    });
    let cores = results.scaling.as_ref().map(|s| {
        let most = s.layouts.iter().map(|l| l.workers).max().unwrap_or(0);
        if most <= 1 {
            "on separate cores (`make bench-scaling`) this machine had room for one worker only"
                .to_string()
        } else {
            format!(
                "on separate cores up to {most} workers, {}",
                s.speed_up(most, Mio).map_or("–".to_string(), |v| format!(
                    "{v:.2}× one worker's requests/s"
                ))
            )
        }
    });
    let said: Vec<String> = [quota, cores].into_iter().flatten().collect();
    (!said.is_empty()).then(|| format!("**Scaling** over `--workers N`: {}.", said.join("; ")))
}
