//! Micro-benchmarks of the sans-IO core: what one request costs in the
//! protocol code alone (parse, route, write the answer), a pipelined batch,
//! the pieces of the answer to `/_/hello` on their own (routing it, and
//! writing it canned or header by header), and rendering the connection
//! table at 10,000 rows.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fivetuple::http::response::{write_response, Answer, Canned, Status};
use fivetuple::http::routes::resolve_target;
use fivetuple::http::{Config, Ctx, Endpoints, Host, Session};
use fivetuple::procnet::TcpState;
use fivetuple::table::{ConnRow, ConnTable, Format, Phase, RowState};

const HELLO: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: 127.0.0.1:500\r\nUser-Agent: wrk\r\n\r\n";

struct NoTable;

impl Host for NoTable {
    fn write_table(&self, _me: usize, format: Format, _rows: usize, out: &mut Vec<u8>) {
        table(0).render(format).write_for(None, out);
    }
}

fn table(rows: usize) -> ConnTable {
    let local: SocketAddr = "127.0.0.1:500".parse().unwrap();
    ConnTable {
        listen: "0.0.0.0:500".parse().unwrap(),
        open: rows,
        accepted: rows as u64,
        served: 0,
        hidden: 0,
        udp_peers: None,
        udp: None,
        worker: None,
        rows: (0..rows)
            .map(|i| ConnRow {
                token: Some(i),
                proto: "tcp",
                local,
                remote: Some(SocketAddr::from((
                    [127, 0, 0, 1],
                    32768 + (i % 28000) as u16,
                ))),
                state: RowState::Tcp(TcpState::Established),
                phase: Phase::Idle,
                age_ms: 12_345,
                bytes_in: 78,
                bytes_out: 140,
                requests: Some(1),
                you: i == 7,
                client: None,
            })
            .collect(),
    }
}

fn protocol(c: &mut Criterion) {
    let config = Config::default();
    let ctx = Ctx {
        peer: Endpoints {
            token: 7,
            local: "127.0.0.1:500".parse().unwrap(),
            remote: "127.0.0.1:54240".parse().unwrap(),
        },
        host: &NoTable,
        date: "Tue, 24 Nov 2026 00:00:00 GMT",
        config: &config,
        shutting_down: false,
        access: None,
    };
    let mut group = c.benchmark_group("session");
    let mut session = Session::default();
    let mut out = Vec::with_capacity(64 * 1024);
    group.throughput(Throughput::Elements(1));
    group.bench_function("feed one GET /_/hello", |b| {
        b.iter(|| {
            out.clear();
            black_box(session.feed(black_box(HELLO), &ctx, &mut out));
        })
    });
    let batch = HELLO.repeat(16);
    group.throughput(Throughput::Elements(16));
    group.bench_function("feed 16 pipelined", |b| {
        b.iter(|| {
            out.clear();
            black_box(session.feed(black_box(&batch), &ctx, &mut out));
        })
    });
    group.finish();

    // `/_/hello` answered the two ways response.rs can: canned (the bytes
    // around the date copied), and header by header.
    static HELLO_ANSWER: Canned = Canned::new(Status::OK, "text/plain", b"Hello, World!");
    let answer = Answer {
        head_only: false,
        minor: 1,
        close: false,
    };
    let mut group = c.benchmark_group("hello");
    group.throughput(Throughput::Elements(1));
    group.bench_function("route GET /_/hello", |b| {
        b.iter(|| {
            black_box(resolve_target(
                black_box("GET"),
                black_box("/_/hello"),
                false,
            ))
        })
    });
    group.bench_function("write canned", |b| {
        b.iter(|| {
            out.clear();
            black_box(HELLO_ANSWER.write(&mut out, &answer, ctx.date));
        })
    });
    group.bench_function("write header by header", |b| {
        b.iter(|| {
            out.clear();
            let body = b"Hello, World!";
            black_box(write_response(
                &mut out,
                &answer,
                Status::OK,
                ctx.date,
                "text/plain",
                &[],
                black_box(body),
            ));
        })
    });
    group.finish();

    let big = table(10_000);
    let mut group = c.benchmark_group("table");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("render_text 10k rows", |b| {
        b.iter(|| black_box(big.render_text()))
    });
    group.bench_function("render_json 10k rows", |b| {
        b.iter(|| black_box(big.render_json()))
    });
    group.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
