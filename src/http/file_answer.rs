//! Answering with a file that the file service has opened.
//!
//! Which file a path names, and whether it may be opened, is the file
//! service's business (`crate::files`). What the answer says once it is
//! open is protocol, the same for every file, and is here:
//!
//! 1. Every answer carries the file's validators, `ETag` and
//!    `Last-Modified`, and `Accept-Ranges: bytes`.
//! 2. The conditional headers come first ([`super::conditional`]): the
//!    client's copy is current (304), or it asked for a version that is
//!    gone (412). Neither has a body.
//! 3. Then a range, if it still applies ([`super::range`]): 206 with the
//!    part, or 416 when it starts past the end. Otherwise 200 and all of it.
//! 4. The head says how long the body is. A small body is copied behind
//!    it, so head and body leave in one write and nothing stays open; a
//!    large one is only named, as a [`FileRange`], which the I/O layer
//!    sends straight from the file (see [`super::body`]).
//!
//! The file is described by the caller, from the descriptor it opened
//! (`fstat`), never by its name again: between a look and an open, a name
//! can come to mean another file.

use std::fs::File;
use std::time::SystemTime;

use super::conditional::{if_range_holds, preconditions, Precondition};
use super::range::parse_range;
use super::response::{write_error, write_head, Answer, Status};
use super::{FileRange, FileRequest, Reply};

/// Bodies up to this size are copied into the output buffer behind their
/// head and leave with it in one write; larger ones are sent from the file
/// by the I/O layer (see [`FileRange`]). Measured on loopback: at 4 KiB
/// the copy and `sendfile` cost the same, from 16 KiB on `sendfile` costs
/// less (at 64 KiB a fifth less CPU per request). Copying the small ones
/// also keeps a pipeline of them in one write, where each file body sent
/// from the file takes a turn of its own.
pub const SMALL_FILE: u64 = 8 * 1024;

/// A regular file, open, and what its answer says of it.
#[derive(Debug)]
pub struct OpenFile {
    pub file: File,
    /// Its length when it was opened: what `Content-Length` promises.
    pub len: u64,
    /// Its entity tag, quoted (`"…"`): changes whenever its content does.
    pub etag: String,
    /// When it was last changed, if the file system says.
    pub modified: Option<SystemTime>,
    pub content_type: String,
}

/// Answers a GET or HEAD for `req` with the open file `opened`.
pub fn answer_file(
    opened: OpenFile,
    req: &FileRequest,
    answer: &Answer,
    date: &str,
    out: &mut Vec<u8>,
) -> Reply {
    let OpenFile {
        file,
        len,
        etag,
        modified,
        content_type,
    } = opened;
    let last_modified = modified.map(httpdate::fmt_http_date);
    let mut headers: Vec<(&str, &str)> = vec![("ETag", &etag), ("Accept-Ranges", "bytes")];
    if let Some(lm) = &last_modified {
        headers.push(("Last-Modified", lm));
    }
    match preconditions(req, &etag, modified) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let status = Status::NOT_MODIFIED;
            write_head(out, answer, status, date, None, &headers, 0);
            return Reply::written(status, 0);
        }
        Precondition::Failed => {
            // No body, for GET as for HEAD: the client asked for the file
            // only if it was still the one it knew, and it is not.
            let status = Status::PRECONDITION_FAILED;
            write_head(out, answer, status, date, None, &[], 0);
            return Reply::written(status, 0);
        }
    }
    let range = req
        .range
        .as_deref()
        .filter(|_| if_range_holds(req.if_range.as_deref(), &etag, last_modified.as_deref()))
        .and_then(|r| parse_range(r, len));
    let (status, start, count, content_range) = match range {
        None => (Status::OK, 0, len, None),
        Some(Err(())) => {
            let cr = format!("bytes */{len}");
            let status = Status::RANGE_NOT_SATISFIABLE;
            let n = write_error(
                out,
                answer,
                status,
                date,
                &[("Content-Range", &cr)],
                "The range is outside the file.",
            );
            return Reply::written(status, n);
        }
        Some(Ok((first, last))) => {
            let cr = format!("bytes {first}-{last}/{len}");
            (Status::PARTIAL_CONTENT, first, last - first + 1, Some(cr))
        }
    };
    if let Some(cr) = &content_range {
        headers.push(("Content-Range", cr));
    }
    write_head(
        out,
        answer,
        status,
        date,
        Some(&content_type),
        &headers,
        count,
    );
    if answer.head_only {
        return Reply::written(status, 0);
    }
    let body = FileRange::new(file, start, count);
    // Small: copied behind the head now, so that head and body leave in
    // one write, and nothing is kept open.
    if count <= SMALL_FILE && body.copy_into(out, SMALL_FILE as usize).is_ok() {
        return Reply::written(status, count);
    }
    // Large, or a small one that failed to read: the head is out, and the
    // I/O layer sends the body from the file. A read that failed here
    // fails there too, and cuts the body short: the connection closes.
    Reply {
        file: Some(body),
        ..Reply::written(status, count)
    }
}
