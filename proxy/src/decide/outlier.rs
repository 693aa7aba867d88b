//! Outlier ejection, as Envoy does it: consecutive 5xx or gateway errors eject an endpoint for
//! the base time multiplied by how often it was ejected before; it returns when that time has
//! passed. How many may be out at once is decided by the caller, who sees all endpoints.

use trellis_model::config::OutlierConfig;

#[derive(Debug, Default, Clone)]
pub struct Outlier {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    times_ejected: u32,
    ejected_until_ms: Option<u64>,
}

/// What an attempt came to, as far as ejection cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// 500, 501, 505... (not a gateway error).
    ServerError,
    /// 502, 503, 504, or no connection at all.
    GatewayError,
}

impl Outcome {
    /// A gRPC call's status: UNAVAILABLE as a 503, the service's other failures as a 500.
    pub fn of_grpc(code: u8) -> Self {
        match code {
            crate::grpc::UNAVAILABLE => Outcome::GatewayError,
            c if crate::grpc::is_failure(c) => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }

    pub fn of_status(status: u16) -> Self {
        match status {
            502..=504 => Outcome::GatewayError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }
}

impl Outlier {
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.is_some_and(|until| now_ms < until)
    }

    /// Whether it is ejected, reading the clock only if it ever was.
    pub fn is_ejected_at(&self, now_ms: impl FnOnce() -> u64) -> bool {
        self.ejected_until_ms.is_some_and(|until| now_ms() < until)
    }

    /// Counts an outcome; returns true when the endpoint has crossed a threshold and should be
    /// ejected (if the caller's max-ejected bound allows).
    pub fn observe(&mut self, outcome: Outcome, config: &OutlierConfig) -> bool {
        match outcome {
            Outcome::Success => {
                self.consecutive_5xx = 0;
                self.consecutive_gateway = 0;
                false
            }
            Outcome::ServerError => {
                self.consecutive_5xx += 1;
                self.consecutive_gateway = 0;
                config.enabled && self.consecutive_5xx >= config.consecutive_5xx
            }
            Outcome::GatewayError => {
                // Gateway errors are 5xx too: both counters move.
                self.consecutive_5xx += 1;
                self.consecutive_gateway += 1;
                config.enabled
                    && (self.consecutive_gateway >= config.consecutive_gateway_errors
                        || self.consecutive_5xx >= config.consecutive_5xx)
            }
        }
    }

    /// Ejects for base × times ejected. Returns until when.
    pub fn eject(&mut self, now_ms: u64, config: &OutlierConfig) -> u64 {
        self.times_ejected += 1;
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        let until = now_ms + config.base_ejection_ms * u64::from(self.times_ejected);
        self.ejected_until_ms = Some(until);
        until
    }
}

/// Whether one more of `total` endpoints may be ejected when `ejected` already are.
pub fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    (ejected + 1) * 100 <= total * max_percent as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierConfig {
        OutlierConfig {
            enabled: true,
            consecutive_5xx: 3,
            consecutive_gateway_errors: 2,
            interval_ms: 10_000,
            base_ejection_ms: 1_000,
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn a_grpc_status_is_judged_as_its_http_kin() {
        assert_eq!(Outcome::of_grpc(14), Outcome::GatewayError, "UNAVAILABLE, as a 503");
        assert_eq!(Outcome::of_grpc(13), Outcome::ServerError, "INTERNAL, as a 500");
        assert_eq!(Outcome::of_grpc(0), Outcome::Success);
        assert_eq!(Outcome::of_grpc(5), Outcome::Success, "NOT_FOUND is the caller's, as a 404");
    }

    #[test]
    fn consecutive_errors_eject_and_the_time_grows_with_each_ejection() {
        let (mut o, c) = (Outlier::default(), config());
        assert!(!o.observe(Outcome::ServerError, &c));
        assert!(!o.observe(Outcome::ServerError, &c));
        assert!(o.observe(Outcome::ServerError, &c));
        assert_eq!(o.eject(0, &c), 1_000);
        assert!(o.is_ejected(999) && !o.is_ejected(1_000));
        assert!(!o.observe(Outcome::GatewayError, &c));
        assert!(o.observe(Outcome::GatewayError, &c), "gateway errors have their own, lower threshold");
        assert_eq!(o.eject(5_000, &c), 7_000, "second ejection lasts twice as long");
    }

    #[test]
    fn a_success_resets_the_count_and_disabled_never_ejects() {
        let (mut o, mut c) = (Outlier::default(), config());
        o.observe(Outcome::ServerError, &c);
        o.observe(Outcome::ServerError, &c);
        o.observe(Outcome::Success, &c);
        assert!(!o.observe(Outcome::ServerError, &c));
        c.enabled = false;
        assert!((0..10).all(|_| !o.observe(Outcome::ServerError, &c)));
    }

    #[test]
    fn never_more_than_the_max_percent_and_never_a_lone_endpoint() {
        assert!(may_eject(0, 2, 50));
        assert!(!may_eject(1, 2, 50));
        assert!(!may_eject(0, 1, 50));
        assert!(may_eject(0, 1, 100));
    }
}
