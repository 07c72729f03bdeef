//! What the server's event loop and the client's share with the operating
//! system: one epoll instance with the signal pipe in it, a wait in
//! `epoll_wait` that a signal cannot break, and durations from the command
//! line that a deadline can hold.
//!
//! Both loops are woken by the same two kinds of thing: a socket that is
//! ready, and a signal (Ctrl-C). signal-hook-mio turns a signal into a byte
//! on a pipe, and the pipe is registered in the same `Poll` as the sockets,
//! so a signal is one more readable event, seen between two batches of
//! work, never in the middle of one ([`poll_with_signals`]).
//!
//! A signal also interrupts `epoll_wait` itself (`EINTR`). That is not an
//! error: the loop waits again, for what is left of its timeout, so a
//! signal neither ends the loop by mistake nor stretches a deadline
//! ([`poll_until`]).

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;

use crate::error::{Error, Result};

/// A new epoll instance, with a pipe for `signals` registered in it under
/// `token`: from now on each of those signals arrives as a readable event
/// for `token` (read them with `Signals::pending`) instead of its default
/// action.
pub fn poll_with_signals(signals: &[libc::c_int], token: Token) -> Result<(Poll, Signals)> {
    let poll = Poll::new().map_err(|e| Error::io("creating the epoll instance", e))?;
    let mut pipe = Signals::new(signals).map_err(|e| Error::io("installing signal handlers", e))?;
    poll.registry()
        .register(&mut pipe, token, Interest::READABLE)
        .map_err(|e| Error::io("registering the signal pipe", e))?;
    Ok((poll, pipe))
}

/// Waits in `epoll_wait` until something is ready or `deadline` passes
/// (`None`: until something is ready). `now` is the time just read by the
/// caller, so the wait costs no clock read of its own. A signal that
/// interrupts the wait starts it again for the time that is left: the
/// signal itself is then ready on its pipe, and the loop sees it as an event.
pub fn poll_until(
    poll: &mut Poll,
    events: &mut Events,
    deadline: Option<Instant>,
    mut now: Instant,
) -> Result<()> {
    loop {
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        match poll.poll(events, timeout) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => now = Instant::now(),
            Err(e) => return Err(Error::io("waiting for events", e)),
        }
    }
}

/// The longest duration any option takes: 10⁹ seconds, about 31 years.
/// Longer is surely a typing mistake, and the clock (`Instant + Duration`)
/// would overflow not far past it.
pub const MAX_SECONDS: f64 = 1e9;

/// A number of seconds from the command line (`--hold 2.5`), checked.
///
/// One rule for every option that takes SECS: a decimal number from 0 to
/// [`MAX_SECONDS`]; anything else (negative, NaN, infinite, larger) is a
/// usage error naming the option. 0 means *none*, returned as `None`: no
/// limit for a timeout, no wait for a hold or a grace period. Each caller
/// says which in its help.
pub fn seconds(option: &str, value: f64) -> Result<Option<Duration>> {
    if !(value.is_finite() && (0.0..=MAX_SECONDS).contains(&value)) {
        return Err(Error::usage(format!(
            "--{option} takes a number of seconds from 0 to {MAX_SECONDS:.0} (got {value})"
        )));
    }
    Ok((value > 0.0).then(|| Duration::from_secs_f64(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_follow_one_rule() {
        assert_eq!(seconds("hold", 0.0).unwrap(), None, "0 is none");
        assert_eq!(
            seconds("hold", 2.5).unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert!(seconds("hold", MAX_SECONDS).unwrap().is_some());
        for bad in [-1.0, f64::NAN, f64::INFINITY, MAX_SECONDS * 2.0] {
            let err = seconds("hold", bad).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().starts_with("--hold takes"), "{err}");
        }
        // The largest value still makes a deadline.
        let longest = seconds("hold", MAX_SECONDS).unwrap().unwrap();
        assert!(Instant::now().checked_add(longest).is_some());
    }

    #[test]
    fn a_wait_ends_at_its_deadline() {
        let (mut poll, _signals) = poll_with_signals(&[libc::SIGUSR2], Token(usize::MAX)).unwrap();
        let mut events = Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_millis(20);
        poll_until(&mut poll, &mut events, Some(deadline), Instant::now()).unwrap();
        assert!(Instant::now() >= deadline);
        assert!(events.is_empty());
    }
}
