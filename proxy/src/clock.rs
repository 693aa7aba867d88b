//! The time, read once each time a connection's task is polled rather than at every step of a
//! request. Within one poll (a few microseconds) the request's arrival, the attempt's send, the
//! pool's check-out and the deadline are the same instant; read apart, they cost some ten clock
//! reads per request, a few per cent of the proxy's CPU under a hypervisor's clock. nginx caches
//! its time once per event-loop turn for the same reason; this is finer, once per task poll.
//!
//! Outside a [`Clocked`] task's poll (hyper's own tasks, the control loop, tests), [`now`]
//! reads the clock.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The time this poll began inside a [`Clocked`] task; the clock's time elsewhere.
pub fn now() -> Instant {
    NOW.get().unwrap_or_else(Instant::now)
}

/// [`now`] in microseconds since the process first asked: a plain number for the decisions
/// that take time as an input (rate limits).
pub fn micros() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    now().saturating_duration_since(start).as_micros() as u64
}

pin_project_lite::pin_project! {
    /// A task whose every poll reads the clock once, for [`now`] to hand out.
    pub struct Clocked<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Clocked<F> {
    pub fn new(inner: F) -> Self {
        Clocked { inner }
    }
}

impl<F: Future> Future for Clocked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Put back, not cleared: a Clocked future polled inside another keeps the outer's time
        // for the outer's remaining steps.
        let _restore = Restore(&NOW, NOW.replace(Some(Instant::now())));
        self.project().inner.poll(cx)
    }
}

/// Puts a thread-local's outer value back when dropped at the end of a poll, even if the poll
/// panics (the task is then gone, the thread not).
pub(crate) struct Restore<T: Copy + 'static>(pub(crate) &'static std::thread::LocalKey<Cell<T>>, pub(crate) T);

impl<T: Copy + 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_poll_sees_one_time_and_the_next_poll_a_later_one() {
        let outside = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > outside, "outside a Clocked task the clock is read");
        let (first, second) = Clocked::new(async {
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(now(), a, "one poll, one time");
            tokio::task::yield_now().await;
            (a, now())
        })
        .await;
        assert!(second >= first + Duration::from_millis(2), "a new poll reads the clock again");
        let after = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > after, "the task's time does not outlive its poll");
    }
}
