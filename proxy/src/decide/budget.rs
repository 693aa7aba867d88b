//! Retry budgets, as Finagle and Linkerd keep them: retries may add at most `ratio` of the
//! requests seen in the window, plus a floor of `min_per_second` so that low traffic can still
//! retry. An outage therefore never multiplies load by the attempt count.

use std::collections::VecDeque;
use trellis_model::config::RetryBudget;

/// Per-second buckets over the window. Time is passed in (milliseconds), so tests need no clock.
#[derive(Debug)]
pub struct Budget {
    config: RetryBudget,
    /// (second, requests, retries), oldest first.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl Budget {
    pub fn new(config: RetryBudget) -> Self {
        Budget { config, buckets: VecDeque::new() }
    }

    pub fn config(&self) -> &RetryBudget {
        &self.config
    }

    /// An original request: it earns `ratio` of a retry.
    pub fn deposit(&mut self, now_ms: u64) {
        self.bucket(now_ms).1 += 1;
    }

    /// Asks to retry; records the retry when allowed.
    pub fn try_withdraw(&mut self, now_ms: u64) -> bool {
        self.bucket(now_ms);
        let (requests, retries) = self.buckets.iter().fold((0, 0), |(q, r), b| (q + b.1, r + b.2));
        let window_s = (self.config.window_ms / 1000).max(1);
        let allowed = self.config.ratio * requests as f64 + (self.config.min_per_second as u64 * window_s) as f64;
        if (retries as f64) < allowed {
            self.bucket(now_ms).2 += 1;
            true
        } else {
            false
        }
    }

    fn bucket(&mut self, now_ms: u64) -> &mut (u64, u64, u64) {
        let second = now_ms / 1000;
        let window_s = (self.config.window_ms / 1000).max(1);
        while self.buckets.front().is_some_and(|b| b.0 + window_s <= second) {
            self.buckets.pop_front();
        }
        if self.buckets.back().is_none_or(|b| b.0 != second) {
            self.buckets.push_back((second, 0, 0));
        }
        self.buckets.back_mut().expect("a bucket was just pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min: u32) -> Budget {
        Budget::new(RetryBudget { ratio, min_per_second: min, window_ms: 10_000 })
    }

    #[test]
    fn retries_are_capped_at_the_ratio_of_requests() {
        let mut b = budget(0.2, 0);
        for _ in 0..100 {
            b.deposit(0);
        }
        let granted = (0..100).filter(|_| b.try_withdraw(0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_floor_allows_retries_at_low_traffic_and_the_window_forgets() {
        let mut b = budget(0.2, 1);
        // One per second over 10 s: 10 retries with no requests at all.
        assert_eq!((0..50).filter(|_| b.try_withdraw(500)).count(), 10);
        // Still inside the window: nothing more.
        assert!(!b.try_withdraw(9_000));
        // The window has moved past those retries.
        assert!(b.try_withdraw(10_600));
    }
}
