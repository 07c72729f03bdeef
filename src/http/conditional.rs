//! Conditional requests (RFC 9110 §13): answer only if the client's copy
//! is not current, or only if it still is.
//!
//! A server describes each version of a file by its *validators*: an entity
//! tag (`ETag: "…"`), which changes whenever the content does, and the time
//! it was last modified (`Last-Modified`). A client that keeps a copy sends
//! them back in its next request, in one of four headers:
//!
//! - `If-None-Match` and `If-Modified-Since`: "send it only if it changed".
//!   When it has not, the answer is `304 Not Modified`, with no body: the
//!   cache's copy is good. This is what makes a reload cheap.
//! - `If-Match` and `If-Unmodified-Since`: "do this only if it is still the
//!   version I know". When it is not, the answer is `412 Precondition
//!   Failed`: the client must not mix pieces of two versions.
//!
//! Entity tags are compared two ways (§8.8.3.2): *strong* (`If-Match`), where
//! a weak tag `W/"x"` never matches, since it promises only "equivalent",
//! not byte-for-byte equal; and *weak* (`If-None-Match`), where the `W/` is
//! ignored. Dates have whole seconds, so they are compared at that
//! precision. The headers are evaluated in one fixed order (§13.2.2), which
//! [`preconditions`] follows step by step.
//!
//! `If-Range` is the last of them and belongs to ranges: "send me this
//! range if the file is still the one I have part of, else the whole file"
//! ([`if_range_holds`]; the range itself is read in [`super::range`]).
//!
//! Nothing here touches a file: the caller says what the validators of the
//! file it opened are, and acts on the answer.

use std::time::SystemTime;

use super::FileRequest;

/// What the conditional headers of a request decide, before any range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// None asked, or all hold: answer as usual.
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: the client asked for the file only if it was unchanged.
    Failed,
}

/// The conditional headers in RFC 9110 §13.2.2's order: `If-Match`, else
/// `If-Unmodified-Since` (412 when either fails); then `If-None-Match`,
/// else `If-Modified-Since` (304 when the copy is current). Range and
/// `If-Range` come after, in the caller. A date that does not parse is
/// ignored, as the RFC asks, and so is a date compared with a file that
/// has no modification time.
pub fn preconditions(req: &FileRequest, etag: &str, modified: Option<SystemTime>) -> Precondition {
    // HTTP dates have whole seconds: compare at that precision.
    let date = |header: &Option<String>| {
        let since = httpdate::parse_http_date(header.as_deref()?.trim()).ok()?;
        let modified = httpdate::HttpDate::from(modified?);
        Some((modified, httpdate::HttpDate::from(since)))
    };
    if let Some(im) = &req.if_match {
        // §13.1.1: strong comparison, so a weak tag never matches.
        let holds = im.trim() == "*" || entity_tags(im).any(|(weak, t)| !weak && t == etag);
        if !holds {
            return Precondition::Failed;
        }
    } else if let Some((modified, since)) = date(&req.if_unmodified_since) {
        if modified > since {
            return Precondition::Failed;
        }
    }
    if let Some(inm) = &req.if_none_match {
        // §13.1.2: weak comparison.
        let matches = inm.trim() == "*" || entity_tags(inm).any(|(_, t)| t == etag);
        return match matches {
            true => Precondition::NotModified,
            false => Precondition::Proceed,
        };
    }
    match date(&req.if_modified_since) {
        Some((modified, since)) if modified <= since => Precondition::NotModified,
        _ => Precondition::Proceed,
    }
}

/// The entity tags of an `If-Match` or `If-None-Match` list, each with
/// whether it is weak (`W/"x"`) and its quoted form (`"x"`). A tag may
/// hold a comma, so the list is read tag by tag, not split at commas;
/// what is not a tag ends it.
fn entity_tags(list: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let (weak, tag) = match rest.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let end = tag.strip_prefix('"')?.find('"')? + 2;
        rest = &tag[end..];
        Some((weak, &tag[..end]))
    })
}

/// `If-Range` (RFC 9110 §13.1.5): the range applies only if the validator
/// still matches, an entity tag exactly or the very `Last-Modified` date;
/// otherwise the whole file is the answer. No header: the range applies.
pub fn if_range_holds(if_range: Option<&str>, etag: &str, last_modified: Option<&str>) -> bool {
    match if_range {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) => last_modified == Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_evaluated_in_rfc_9110s_order() {
        use Precondition::{Failed, NotModified, Proceed};
        let etag = "\"e1\"";
        let modified = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").ok();
        let before = "Sat, 05 Nov 1994 08:49:37 GMT";
        let same = "Sun, 06 Nov 1994 08:49:37 GMT";
        let after = "Mon, 07 Nov 1994 08:49:37 GMT";
        let h = |v: &str| Some(v.to_string());
        let req = |im, ius, inm, ims| FileRequest {
            if_match: im,
            if_unmodified_since: ius,
            if_none_match: inm,
            if_modified_since: ims,
            ..FileRequest::default()
        };
        let cases = [
            (req(None, None, None, None), Proceed),
            // If-Match: strong comparison, `*`, lists.
            (req(h("\"e1\""), None, None, None), Proceed),
            (req(h("\"x\", \"e1\""), None, None, None), Proceed),
            (req(h("*"), None, None, None), Proceed),
            (req(h("\"x\""), None, None, None), Failed),
            (req(h("W/\"e1\""), None, None, None), Failed),
            (req(h("\"e1"), None, None, None), Failed),
            // If-Unmodified-Since, only without If-Match.
            (req(None, h(same), None, None), Proceed),
            (req(None, h(after), None, None), Proceed),
            (req(None, h(before), None, None), Failed),
            (req(None, h("yesterday"), None, None), Proceed),
            (req(h("\"e1\""), h(before), None, None), Proceed),
            (req(h("\"x\""), h(after), None, None), Failed),
            // Then If-None-Match (weak comparison), else If-Modified-Since.
            (req(None, None, h("W/\"e1\""), None), NotModified),
            (req(None, None, h("\"x\",\"e1\""), None), NotModified),
            (req(None, None, h("*"), None), NotModified),
            (req(None, None, h("\"x\""), h(after)), Proceed),
            (req(None, None, None, h(same)), NotModified),
            (req(None, None, None, h(before)), Proceed),
            // A failed precondition wins over a current copy.
            (req(h("\"x\""), None, h("\"e1\""), None), Failed),
            (req(None, h(before), None, h(after)), Failed),
            (req(h("\"e1\""), None, h("\"e1\""), None), NotModified),
        ];
        for (request, want) in cases {
            assert_eq!(preconditions(&request, etag, modified), want, "{request:?}");
        }
        // A file without a time: its dates decide nothing.
        let dated = req(None, h(before), None, h(after));
        assert_eq!(preconditions(&dated, etag, None), Proceed);
    }

    #[test]
    fn entity_tag_lists_are_read_tag_by_tag() {
        let tags: Vec<_> = entity_tags(" \"a\", W/\"b\" ,\"c,d\"").collect();
        assert_eq!(
            tags,
            [(false, "\"a\""), (true, "\"b\""), (false, "\"c,d\"")]
        );
        assert_eq!(entity_tags("\"a").count(), 0);
        assert_eq!(entity_tags("a, \"b\"").count(), 0);
    }

    #[test]
    fn a_range_applies_only_to_the_version_it_names() {
        let etag = "\"e1\"";
        let date = Some("Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(if_range_holds(None, etag, date));
        assert!(if_range_holds(Some("\"e1\""), etag, date));
        assert!(!if_range_holds(Some("\"e2\""), etag, date));
        // A weak tag promises no byte-for-byte equality: no range from it.
        assert!(!if_range_holds(Some("W/\"e1\""), etag, date));
        assert!(if_range_holds(date, etag, date));
        assert!(!if_range_holds(
            Some("Mon, 07 Nov 1994 08:49:37 GMT"),
            etag,
            date
        ));
        assert!(!if_range_holds(date, etag, None));
    }
}
