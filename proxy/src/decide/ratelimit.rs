//! Local rate limits: token buckets, as Envoy's local_ratelimit and Linkerd's
//! HTTPLocalRateLimitPolicy keep them, one set per limit in each proxy. A bucket holds up to
//! `burst` tokens and gains `per_second` of them a second; a request takes one from every
//! bucket that applies to it (the limit's total, then its caller's), or from none.
//! Time is passed in (microseconds), so tests need no clock.

use crate::hash::Map;
use trellis_model::config::{Rate, RateLimitConfig};

/// Per-caller buckets beyond this many are pruned of the full ones (callers gone quiet):
/// callers are mesh identities, few, but a limit must not grow without bound.
const MAX_CALLERS: usize = 4096;

#[derive(Debug, Clone)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    at_us: u64,
}

impl Bucket {
    fn full(rate: Rate, now_us: u64) -> Self {
        Bucket { rate, tokens: f64::from(rate.burst), at_us: now_us }
    }

    fn refill(&mut self, now_us: u64) {
        let elapsed = now_us.saturating_sub(self.at_us) as f64 / 1e6;
        self.tokens = (self.tokens + elapsed * f64::from(self.rate.per_second)).min(f64::from(self.rate.burst));
        self.at_us = self.at_us.max(now_us);
    }

    /// Takes a token, or says how long until one is due.
    fn take(&mut self, now_us: u64) -> Result<(), u64> {
        self.refill(now_us);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let rate = f64::from(self.rate.per_second.max(1));
        Err(((1.0 - self.tokens) / rate * 1e6).ceil() as u64)
    }

    fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(f64::from(self.rate.burst));
    }

    fn is_full(&self) -> bool {
        self.tokens >= f64::from(self.rate.burst)
    }
}

/// Why a request was refused: which bucket, and when to try again.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub scope: Scope,
    pub retry_after_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All callers together.
    Total,
    /// The caller's own rate (`perCaller` or its override).
    Caller,
}

/// One limit's buckets.
#[derive(Debug)]
pub struct Limiter {
    config: RateLimitConfig,
    total: Option<Bucket>,
    callers: Map<String, Bucket>,
}

impl Limiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Limiter { config, total: None, callers: Map::default() }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The rate a caller gets alone: its override, else `perCaller`, else none.
    fn caller_rate(&self, caller: &str) -> Option<Rate> {
        let named = self.config.overrides.iter().find(|o| o.callers.iter().any(|c| c == caller));
        named.map(|o| o.rate).or(self.config.per_caller)
    }

    /// Admits `caller` (a verified service, or `plaintext` / `unknown`) at `now_us`, taking a
    /// token from each bucket that applies; a refused request takes none.
    pub fn admit(&mut self, caller: &str, now_us: u64) -> Result<(), Refused> {
        let refused = |scope, retry_after_us| Refused { scope, retry_after_us };
        if let Some(rate) = self.config.total {
            let total = self.total.get_or_insert_with(|| Bucket::full(rate, now_us));
            total.take(now_us).map_err(|wait| refused(Scope::Total, wait))?;
        }
        let Some(rate) = self.caller_rate(caller) else { return Ok(()) };
        if !self.callers.contains_key(caller) && self.callers.len() >= MAX_CALLERS {
            self.callers.retain(|_, b| {
                b.refill(now_us);
                !b.is_full()
            });
        }
        let own = self.callers.entry(caller.to_string()).or_insert_with(|| Bucket::full(rate, now_us));
        own.take(now_us).map_err(|wait| {
            // The request does not go: its token from the total is not spent.
            if let Some(total) = &mut self.total {
                total.give_back();
            }
            refused(Scope::Caller, wait)
        })
    }

    /// Returns the tokens `admit` took for `caller`: another limit refused the request.
    pub fn refund(&mut self, caller: &str) {
        if let Some(total) = &mut self.total {
            total.give_back();
        }
        if let Some(own) = self.callers.get_mut(caller) {
            own.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_model::config::RateOverride;

    const S: u64 = 1_000_000;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    fn limiter(total: Option<Rate>, per_caller: Option<Rate>, overrides: Vec<(&str, Rate)>) -> Limiter {
        let overrides =
            overrides.into_iter().map(|(c, rate)| RateOverride { callers: vec![c.to_string()], rate }).collect();
        Limiter::new(RateLimitConfig { by: "TrafficPolicy/t".into(), total, per_caller, overrides })
    }

    /// Requests admitted when `caller` sends one every `every_us` from 0 to `until_us`.
    fn admitted(l: &mut Limiter, caller: &str, every_us: u64, until_us: u64) -> usize {
        (0..until_us / every_us).filter(|i| l.admit(caller, i * every_us).is_ok()).count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = limiter(Some(rate(100, 10)), None, vec![]);
        // 1,000 requests at once: the burst only.
        assert_eq!((0..1000).filter(|_| l.admit("a", 0).is_ok()).count(), 10);
        // Then ten seconds at 1,000/s: 100 a second, whatever is asked.
        let mut l = limiter(Some(rate(100, 10)), None, vec![]);
        let n = admitted(&mut l, "a", 1_000, 10 * S);
        assert!((1000..=1010).contains(&n), "{n}");
    }

    #[test]
    fn a_refusal_says_when_a_token_is_due() {
        let mut l = limiter(Some(rate(4, 1)), None, vec![]);
        assert!(l.admit("a", 0).is_ok());
        assert_eq!(l.admit("a", 0), Err(Refused { scope: Scope::Total, retry_after_us: 250_000 }));
        assert_eq!(l.admit("a", 200_000).unwrap_err().retry_after_us, 50_000);
        assert!(l.admit("a", 250_000).is_ok());
    }

    #[test]
    fn each_caller_has_its_own_bucket_and_overrides_their_own_rate() {
        let mut l = limiter(None, Some(rate(10, 10)), vec![("storefront", rate(50, 50))]);
        assert_eq!(admitted(&mut l, "checkout", 1_000, S - 1), 19, "its burst, then 10/s");
        assert_eq!(admitted(&mut l, "search", 1_000, S - 1), 19, "unaffected by checkout");
        assert_eq!(admitted(&mut l, "storefront", 1_000, S - 1), 99, "its override");
    }

    #[test]
    fn the_total_caps_every_caller_and_a_caller_refused_spends_none_of_it() {
        let mut l = limiter(Some(rate(10, 10)), Some(rate(2, 2)), vec![]);
        // `a` is refused by its own bucket after two: the total keeps the rest for others.
        assert_eq!((0..5).filter(|_| l.admit("a", 0).is_ok()).count(), 2);
        assert_eq!((0..20).filter(|i| l.admit(&format!("c{i}"), 0).is_ok()).count(), 8);
        assert_eq!(l.admit("z", 0).unwrap_err().scope, Scope::Total);
    }

    #[test]
    fn a_refund_returns_what_was_taken() {
        let mut l = limiter(Some(rate(10, 1)), Some(rate(10, 1)), vec![]);
        assert!(l.admit("a", 0).is_ok());
        l.refund("a");
        assert!(l.admit("a", 0).is_ok(), "both buckets had their token back");
        assert!(l.admit("a", 0).is_err());
    }

    #[test]
    fn quiet_callers_are_pruned_when_the_map_is_full() {
        let mut l = limiter(None, Some(rate(1, 1)), vec![]);
        for i in 0..MAX_CALLERS {
            assert!(l.admit(&format!("c{i}"), 0).is_ok());
        }
        // Ten seconds later every bucket has refilled: the next caller makes room.
        assert!(l.admit("new", 10 * S).is_ok());
        assert_eq!(l.callers.len(), 1);
    }
}
