//! Choosing an endpoint: power of two choices over peak-EWMA latency (the default, as in
//! Linkerd and Finagle), round-robin, or least-request. Pure functions over endpoint stats.

use trellis_model::config::LoadBalancer;

/// Latency estimate for an endpoint never measured: optimistic, so new endpoints get traffic.
pub const DEFAULT_RTT_MS: f64 = 30.0;
/// How quickly old observations fade.
const DECAY_MS: f64 = 10_000.0;

/// Peak-sensitive moving average: a slow response raises the estimate at once; fast ones lower
/// it gradually. Cost multiplies it by the requests in flight.
#[derive(Debug, Clone, Copy)]
pub struct PeakEwma {
    estimate_ms: f64,
    stamp_ms: u64,
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma { estimate_ms: DEFAULT_RTT_MS, stamp_ms: 0 }
    }
}

impl PeakEwma {
    pub fn observe(&mut self, rtt_ms: f64, now_ms: u64) {
        if rtt_ms > self.estimate_ms {
            self.estimate_ms = rtt_ms;
        } else {
            let elapsed = now_ms.saturating_sub(self.stamp_ms) as f64;
            let w = (-elapsed / DECAY_MS).exp();
            self.estimate_ms = self.estimate_ms * w + rtt_ms * (1.0 - w);
        }
        self.stamp_ms = now_ms;
    }

    pub fn cost(&self, in_flight: usize) -> f64 {
        self.estimate_ms * (in_flight as f64 + 1.0)
    }
}

/// What the balancer knows of a candidate.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub cost: f64,
    pub in_flight: usize,
}

/// Index of the chosen candidate. `r1`, `r2` are uniform random numbers; `turn` a counter.
pub fn choose(lb: LoadBalancer, candidates: &[Candidate], r1: usize, r2: usize, turn: usize) -> Option<usize> {
    let n = candidates.len();
    match (n, lb) {
        (0, _) => None,
        (1, _) => Some(0),
        (_, LoadBalancer::RoundRobin) => Some(turn % n),
        (_, LoadBalancer::LeastRequest) => (0..n).min_by_key(|&i| (candidates[i].in_flight, (i + turn) % n)),
        (_, LoadBalancer::P2cEwma) => {
            let a = r1 % n;
            // A second, distinct pick.
            let b = (a + 1 + r2 % (n - 1)) % n;
            Some(if candidates[b].cost < candidates[a].cost { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(cost: f64, in_flight: usize) -> Candidate {
        Candidate { cost, in_flight }
    }

    #[test]
    fn p2c_takes_the_cheaper_of_two_distinct_picks() {
        let cs = [c(10.0, 0), c(50.0, 0), c(5.0, 0)];
        assert_eq!(choose(LoadBalancer::P2cEwma, &cs, 0, 0, 0), Some(0)); // 0 vs 1
        assert_eq!(choose(LoadBalancer::P2cEwma, &cs, 0, 1, 0), Some(2)); // 0 vs 2
        assert_eq!(choose(LoadBalancer::P2cEwma, &cs, 1, 0, 0), Some(2)); // 1 vs 2
        // Over every pair, the most expensive endpoint is never chosen.
        for r1 in 0..3 {
            for r2 in 0..2 {
                assert_ne!(choose(LoadBalancer::P2cEwma, &cs, r1, r2, 0), Some(1));
            }
        }
    }

    #[test]
    fn least_request_and_round_robin() {
        let cs = [c(1.0, 3), c(1.0, 1), c(1.0, 2)];
        assert_eq!(choose(LoadBalancer::LeastRequest, &cs, 0, 0, 0), Some(1));
        let picks: Vec<_> = (0..4).map(|t| choose(LoadBalancer::RoundRobin, &cs, 0, 0, t).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0]);
        assert_eq!(choose(LoadBalancer::P2cEwma, &[], 0, 0, 0), None);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let mut e = PeakEwma::default();
        e.observe(200.0, 0);
        assert_eq!(e.cost(0), 200.0);
        e.observe(10.0, 10_000);
        // One decay period: about 37% of the old estimate remains.
        assert!((e.cost(0) - (200.0 * (-1f64).exp() + 10.0 * (1.0 - (-1f64).exp()))).abs() < 1e-9);
        assert_eq!(e.cost(1), e.cost(0) * 2.0, "requests in flight raise the cost");
    }
}
