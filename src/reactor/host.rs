//! The server as the protocol sees it: the [`Host`] that `/_/conns`,
//! `/_/metrics` and the event stream ask.
//!
//! The HTTP code never touches the slab. For each session step the reactor
//! lends it a [`SlabView`]: read-only borrows of the connections, the UDP
//! socket, the workers' board and the metrics, and the two things a turn
//! shares among its requesters: this turn's renderings of the default table
//! ([`TableCache`]), and what is left of this turn's share of work for
//! bodies made a piece at a time (a long table, a directory listing).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use slab::Slab;

use super::board::Seat;
use super::Summary;
use crate::connection::Connection;
use crate::http::{Host, Piece, Pieces, Subscribe, TablePieces};
use crate::live::metrics::{self, Figures, WorkerFigures};
use crate::live::Live;
use crate::sink::Output;
use crate::table::{
    ByteString, ConnRow, ConnTable, Format, Rendered, TableCursor, DEFAULT_ROWS, ROWS_AT_ONCE,
};
use crate::udp::Udp;

/// Rows of one long table written per piece, at most: a slice of about 25
/// KB of text, so that a single requester also gets its table in pieces.
const ROWS_PER_PIECE: usize = 256;

/// The slab seen by the HTTP code, for `/_/conns`.
pub(super) struct SlabView<'a> {
    pub(super) conns: &'a Slab<Connection>,
    pub(super) udp: Option<&'a Udp>,
    pub(super) seat: Option<&'a Seat>,
    pub(super) listen: SocketAddr,
    pub(super) started: Instant,
    pub(super) stats: Summary,
    pub(super) cache: &'a RefCell<TableCache>,
    pub(super) pieces_left: &'a Cell<usize>,
    pub(super) live: &'a Live,
    pub(super) output: &'a Output,
}

/// This turn's renderings of the connection table. However many clients
/// ask for `/_/conns` in one turn, the table is written out once per format
/// and row limit, and each answer is a copy with the requester's own row
/// put in. A connection accepted or closed makes the renderings stale (every
/// answer lists exactly the connections open when it was written; only the
/// counters of other rows may be a turn old); the reactor also empties it
/// before it sleeps, so nothing stale is kept.
#[derive(Debug, Default)]
pub(super) struct TableCache {
    pub(super) renderings: Vec<(Format, usize, Rendered)>,
    /// Connections accepted and open when the renderings were made.
    pub(super) made_at: (u64, usize),
}

impl SlabView<'_> {
    /// The listener's row and the first `rows` connections, none marked.
    pub(super) fn snapshot(&self, rows: usize) -> ConnTable {
        let now = Instant::now();
        let mut table = Vec::with_capacity(self.conns.len().min(rows) + 1);
        table.push(ConnRow::listener(
            self.listen,
            now.duration_since(self.started),
        ));
        if let Some(udp) = self.udp {
            table.push(udp.socket_row(now));
        }
        let fixed = table.len();
        table.extend(self.conns.iter().take(rows).map(|(_, c)| c.row(now, false)));
        let hidden = self.conns.len() - (table.len() - fixed);
        if let Some(udp) = self.udp {
            table.extend(udp.flow_rows(now, rows));
        }
        ConnTable {
            listen: self.listen,
            open: self.conns.len(),
            accepted: self.stats.accepted,
            served: self.stats.served,
            hidden,
            udp_peers: self.udp.map(Udp::flows),
            udp: self.udp.map(Udp::stats),
            worker: self.seat.map(|s| s.index),
            rows: table,
        }
    }
}

impl Host for SlabView<'_> {
    fn worker(&self) -> Option<usize> {
        self.seat.map(|s| s.index)
    }

    fn generation(&self) -> u32 {
        crate::restart::generation()
    }

    /// This worker's live table, and every other worker's latest posted one.
    fn write_all_workers(&self, me: usize, format: Format, rows: usize, out: &mut Vec<u8>) {
        let Some(seat) = self.seat else {
            return self.write_table(me, format, rows, out);
        };
        let now = Instant::now();
        seat.board.ask(seat.index, now);
        let mut workers = Vec::with_capacity(seat.board.len());
        for index in 0..seat.board.len() {
            // Each table as its own rendering (this worker's live, with the
            // requester's row marked; the others' as last posted).
            let (age, table) = if index == seat.index {
                let mut mine = Vec::new();
                self.write_table(me, format, rows, &mut mine);
                (Some(Duration::ZERO), Some(mine))
            } else {
                match seat.board.latest(index) {
                    Some((at, table)) => {
                        let mut theirs = Vec::new();
                        table.render(format).write_for(None, &mut theirs);
                        (Some(now.saturating_duration_since(at)), Some(theirs))
                    }
                    None => (None, None),
                }
            };
            workers.push((index, age, table));
        }
        match format {
            Format::Text => {
                for (index, age, table) in workers {
                    let said = match (index == seat.index, age) {
                        (true, _) => " (yours, live)".to_string(),
                        (false, Some(age)) => format!(" (as of {} ms ago)", age.as_millis()),
                        (false, None) => " (no table posted yet: ask again)".to_string(),
                    };
                    let _ = writeln!(ByteString(out), "--- worker {index}{said}");
                    out.extend_from_slice(table.as_deref().unwrap_or_default());
                    out.push(b'\n');
                }
            }
            Format::Json => {
                // The tables are JSON already (rendered by serde in
                // `crate::table`): they go in as they are, and serde writes
                // what holds them.
                #[derive(serde::Serialize)]
                struct Worker {
                    worker: usize,
                    age_ms: u64,
                    table: Option<Box<RawValue>>,
                }
                #[derive(serde::Serialize)]
                struct Workers {
                    workers: Vec<Worker>,
                }
                let workers = workers
                    .into_iter()
                    .map(|(index, age, table)| Worker {
                        worker: index,
                        age_ms: age.unwrap_or_default().as_millis() as u64,
                        table: table
                            .and_then(|t| String::from_utf8(t).ok())
                            .and_then(|t| RawValue::from_string(t.trim_end().to_string()).ok()),
                    })
                    .collect();
                let _ = serde_json::to_writer(&mut *out, &Workers { workers });
                out.push(b'\n');
            }
        }
    }

    /// Worker `worker`'s table: live if it is this one, else as posted
    /// (asking for fresher posts, as `?workers` does).
    fn write_worker_table(
        &self,
        me: usize,
        worker: usize,
        format: Format,
        rows: usize,
        out: &mut Vec<u8>,
    ) {
        let Some(seat) = self
            .seat
            .filter(|s| s.index != worker && worker < s.board.len())
        else {
            return self.write_table(me, format, rows, out);
        };
        seat.board.ask(seat.index, Instant::now());
        match seat.board.latest(worker) {
            Some((_, table)) => table.render(format).write_for(None, out),
            // Not posted yet (it started less than a turn ago): an empty
            // table of the right worker, not another worker's rows.
            None => ConnTable {
                listen: self.listen,
                open: 0,
                accepted: 0,
                served: 0,
                hidden: 0,
                udp_peers: None,
                udp: None,
                worker: Some(worker),
                rows: Vec::new(),
            }
            .render(format)
            .write_for(None, out),
        }
    }

    fn write_table(&self, me: usize, format: Format, rows: usize, out: &mut Vec<u8>) {
        let mut cache = self.cache.borrow_mut();
        let now = (self.stats.accepted, self.conns.len());
        if cache.made_at != now {
            cache.renderings.clear();
            cache.made_at = now;
        }
        let found = cache
            .renderings
            .iter()
            .position(|(f, r, _)| *f == format && *r == rows);
        let index = found.unwrap_or_else(|| {
            let rendered = self.snapshot(rows).render(format);
            cache.renderings.push((format, rows, rendered));
            cache.renderings.len() - 1
        });
        let mine = self.conns.get(me).map(|c| c.row(Instant::now(), true));
        cache.renderings[index].2.write_for(mine.as_ref(), out);
    }

    fn table_pieces(&self, me: usize, format: Format, rows: usize) -> Option<Box<dyn Pieces>> {
        // The default table, or one of a small server, is written at once
        // (and shared by everyone who asks in the same turn).
        if rows.min(self.conns.len()) <= DEFAULT_ROWS {
            return None;
        }
        Some(Box::new(TablePieces(TableCursor::new(format, me, rows))))
    }

    /// The next rows of a long table, in token order, as many as this
    /// turn's share allows; the first slice starts with the totals, the
    /// last ends with the UDP peers.
    fn write_table_piece(&self, cursor: &mut TableCursor, out: &mut Vec<u8>) -> Piece {
        let want = ROWS_PER_PIECE.min(cursor.rows_left);
        let granted = self.turn_budget(want);
        if want > 0 && granted == 0 {
            return Piece::More; // this turn's share is spent: next turn
        }
        let now = Instant::now();
        let end = self.conns.capacity();
        let mut rows = Vec::with_capacity(granted);
        while rows.len() < granted && cursor.next_key < end {
            let key = cursor.next_key;
            if let Some(conn) = self.conns.get(key) {
                rows.push(conn.row(now, key == cursor.me));
            }
            cursor.next_key += 1;
        }
        if cursor.started() {
            cursor.rows(&rows, out);
        } else {
            let mut head = self.snapshot(0);
            head.hidden = self.conns.len().saturating_sub(cursor.rows_left);
            head.rows.truncate(1 + usize::from(self.udp.is_some()));
            cursor.start(head, &rows, out);
        }
        if cursor.rows_left > 0 && cursor.next_key < end {
            return Piece::More;
        }
        let peers = self
            .udp
            .map(|udp| udp.flow_rows(now, ROWS_AT_ONCE))
            .unwrap_or_default();
        cursor.finish(&peers, out);
        Piece::Done
    }

    fn turn_budget(&self, want: usize) -> usize {
        let left = self.pieces_left.get();
        let granted = want.min(left);
        self.pieces_left.set(left - granted);
        granted
    }

    fn write_metrics(&self, out: &mut Vec<u8>) -> bool {
        let stats = self.stats;
        let Some(seat) = self.seat else {
            self.live
                .write_metrics(self.conns, stats.accepted, stats.served, out);
            metrics::render_output(self.output, out);
            return true;
        };
        // This worker's figures live, the others' as last posted. Its own
        // go on the board first: a later scrape that another worker answers
        // then starts from these or newer ones, and no counter goes back.
        let now = Instant::now();
        let mine = self.live.figures(self.conns, stats.accepted, stats.served);
        seat.board.post_figures(seat.index, mine.clone(), now);
        let others: Vec<(usize, Instant, Figures)> = (0..seat.board.len())
            .filter(|&index| index != seat.index)
            .filter_map(|index| {
                let (at, figures) = seat.board.latest_figures(index)?;
                Some((index, at, figures))
            })
            .collect();
        let mut workers = vec![WorkerFigures {
            worker: seat.index,
            age: Duration::ZERO,
            figures: &mine,
        }];
        workers.extend(others.iter().map(|(index, at, figures)| WorkerFigures {
            worker: *index,
            age: now.saturating_duration_since(*at),
            figures,
        }));
        workers.sort_by_key(|w| w.worker);
        metrics::render_workers(&workers, out);
        metrics::render_output(self.output, out);
        true
    }

    fn subscribe(&self) -> Subscribe {
        self.live.subscribe()
    }
}
