//! Deadlines inside a request's future, served by the timer its connection already has.
//!
//! A tokio timer per request (the rule's request timeout, its per-try timeout) is registered in
//! the runtime's timer wheel when the request waits for its upstream and taken out again when
//! the response comes, nearly always long before the deadline: about 2 % of the proxy's
//! user-space work per request (callgrind). The proxy's HTTP/1.1 server polls each request's future in the connection's
//! task, which keeps one timer for all its deadlines anyway (see `h1::server`). So while it
//! polls one with [`poll`], a deadline asked for with [`ask`] is noted instead, and the server
//! moves its timer to the earliest of them only if the timer would fire later. Outside such a
//! poll (a connection hyper serves, a spawned task) `ask` says so, and the caller sets a timer
//! of its own.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// The alarm of the poll under way.
#[derive(Clone, Copy)]
struct Alarm {
    /// The earliest deadline asked for in this poll.
    earliest: Option<Instant>,
    /// The timer fired at this deadline: deadlines up to it are due.
    fired: Option<Instant>,
}

thread_local! {
    static ALARM: Cell<Option<Alarm>> = const { Cell::new(None) };
}

/// What [`ask`] answered.
#[derive(Debug, PartialEq)]
pub enum Asked {
    /// The deadline has passed.
    Due,
    /// The task's timer will wake it by then.
    Noted,
    /// No alarm serves this poll: the caller needs a timer of its own.
    Unserved,
}

/// Asks the poll's alarm to wake the task by `deadline`.
pub fn ask(deadline: Instant) -> Asked {
    ALARM.with(|a| {
        let Some(mut alarm) = a.get() else { return Asked::Unserved };
        if alarm.fired.is_some_and(|f| f >= deadline) || crate::clock::now() >= deadline {
            return Asked::Due;
        }
        alarm.earliest = Some(alarm.earliest.map_or(deadline, |e| e.min(deadline)));
        a.set(Some(alarm));
        Asked::Noted
    })
}

/// Polls `fut` with an alarm: also returns the earliest deadline its futures asked for while it
/// is pending. `fired`: the deadline at which the caller's timer fired since the last poll.
pub fn poll<F: Future + ?Sized>(
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
    fired: Option<Instant>,
) -> (Poll<F::Output>, Option<Instant>) {
    let _restore = crate::clock::Restore(&ALARM, ALARM.replace(Some(Alarm { earliest: None, fired })));
    let poll = fut.poll(cx);
    (poll, ALARM.get().and_then(|a| a.earliest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_asked_in_a_poll_come_back_earliest_first_and_fired_ones_are_due() {
        let now = Instant::now();
        let (later, sooner) = (now + Duration::from_secs(2), now + Duration::from_secs(1));
        assert_eq!(ask(later), Asked::Unserved, "no alarm outside a poll");
        let cx = &mut Context::from_waker(futures::task::noop_waker_ref());
        let mut asks = std::pin::pin!(std::future::poll_fn(|_| {
            assert_eq!(ask(later), Asked::Noted);
            assert_eq!(ask(sooner), Asked::Noted);
            Poll::<()>::Pending
        }));
        assert_eq!(poll(asks.as_mut(), cx, None), (Poll::Pending, Some(sooner)));
        let mut due = std::pin::pin!(std::future::poll_fn(|_| Poll::Ready((ask(sooner), ask(later)))));
        assert_eq!(poll(due.as_mut(), cx, Some(sooner)).0, Poll::Ready((Asked::Due, Asked::Noted)));
        let mut past = std::pin::pin!(std::future::poll_fn(|_| Poll::Ready(ask(now - Duration::from_millis(1)))));
        assert_eq!(poll(past.as_mut(), cx, None).0, Poll::Ready(Asked::Due), "a deadline already past is due");
        assert_eq!(ask(later), Asked::Unserved, "the alarm ends with its poll");
    }
}
