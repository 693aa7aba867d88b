//! What the proxy remembers about each endpoint across requests and config versions: latency
//! estimate, requests in flight, ejection state. Keyed by address.

use crate::decide::balance::{Candidate, PeakEwma, choose};
use crate::decide::outlier::{Outcome, Outlier, may_eject};
use crate::sync::Locked;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use trellis_model::Endpoint;
use trellis_model::config::{LoadBalancer, OutlierConfig};

#[derive(Default)]
pub struct EndpointState {
    ewma: Mutex<PeakEwma>,
    in_flight: AtomicUsize,
    outlier: Mutex<Outlier>,
}

/// Counts a request in flight until dropped.
pub struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pick's working lists, kept per thread so that a pick allocates nothing.
#[derive(Default)]
struct Scratch {
    pool: Vec<(usize, Arc<EndpointState>, bool)>,
    candidates: Vec<Candidate>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

pub struct Endpoints {
    states: Mutex<crate::hash::Map<String, Arc<EndpointState>>>,
    epoch: Instant,
    /// Round-robin's position, one for every pick the proxy makes.
    turn: AtomicUsize,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints { states: Mutex::default(), epoch: Instant::now(), turn: Default::default() }
    }
}

impl Endpoints {
    pub fn now_ms(&self) -> u64 {
        crate::clock::now().saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn state(&self, addr: &str) -> Arc<EndpointState> {
        let mut states = self.states.locked();
        if let Some(s) = states.get(addr) {
            return s.clone();
        }
        states.entry(addr.to_string()).or_default().clone()
    }

    /// Forgets endpoints no longer in any config, so the map never grows without bound.
    pub fn retain(&self, live: &std::collections::HashSet<&str>) {
        self.states.locked().retain(|addr, _| live.contains(addr.as_str()));
    }

    /// Picks an endpoint of `version` (its index in `all`), skipping ejected ones unless every
    /// one is ejected (then a possibly-sick endpoint beats none: Envoy's panic mode).
    pub fn pick(&self, lb: LoadBalancer, all: &[Endpoint], version: &str) -> Option<(usize, InFlight)> {
        // Read only when an endpoint has been ejected: nearly never.
        let now = std::cell::OnceCell::new();
        let now = || *now.get_or_init(|| self.now_ms());
        SCRATCH.with_borrow_mut(|Scratch { pool, candidates }| {
            {
                // One lock for the whole lookup, not one per endpoint.
                let mut states = self.states.locked();
                pool.extend(all.iter().enumerate().filter(|(_, e)| e.version == version).map(|(i, e)| {
                    // Looked up by reference: an owned key would allocate on every request.
                    let state = match states.get(&e.addr) {
                        Some(s) => s.clone(),
                        None => states.entry(e.addr.clone()).or_default().clone(),
                    };
                    let ejected = state.outlier.locked().is_ejected_at(now);
                    (i, state, ejected)
                }));
            }
            if pool.iter().any(|(_, _, ejected)| !ejected) {
                pool.retain(|(_, _, ejected)| !ejected);
            }
            candidates.extend(pool.iter().map(|(_, s, _)| {
                let in_flight = s.in_flight.load(Ordering::Relaxed);
                Candidate { cost: s.ewma.locked().cost(in_flight), in_flight }
            }));
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            let picked = choose(lb, candidates, fastrand::usize(..), fastrand::usize(..), turn).map(|i| {
                let (at, state, _) = pool.swap_remove(i);
                state.in_flight.fetch_add(1, Ordering::Relaxed);
                (at, InFlight(state))
            });
            // Emptied for the next pick, holding no endpoint meanwhile.
            pool.clear();
            candidates.clear();
            picked
        })
    }

    /// Records the latency and outcome of the attempt `picked` was handed out for, sent at
    /// `sent` and answered at `answered`. Returns true when it ejected the endpoint.
    pub fn record(
        &self,
        picked: &InFlight,
        addr: &str,
        times: (Instant, Instant),
        outcome: Outcome,
        peers: &[Endpoint],
        config: &OutlierConfig,
    ) -> bool {
        self.observe_latency(picked, times);
        self.judge(picked, addr, outcome, peers, config)
    }

    /// Records the latency of the attempt `picked` was handed out for, sent at `sent` and
    /// answered at `answered`.
    pub fn observe_latency(&self, picked: &InFlight, (sent, answered): (Instant, Instant)) {
        let now = answered.saturating_duration_since(self.epoch).as_millis() as u64;
        let rtt_ms = answered.saturating_duration_since(sent).as_secs_f64() * 1000.0;
        picked.0.ewma.locked().observe(rtt_ms, now);
    }

    /// Judges the endpoint at `addr` on the outcome of the attempt `picked` was handed out
    /// for. Returns true when it ejected the endpoint.
    pub fn judge(
        &self,
        picked: &InFlight,
        addr: &str,
        outcome: Outcome,
        peers: &[Endpoint],
        config: &OutlierConfig,
    ) -> bool {
        let now = crate::clock::now().saturating_duration_since(self.epoch).as_millis() as u64;
        let state = &picked.0;
        if !state.outlier.locked().observe(outcome, config) {
            return false;
        }
        let ejected =
            peers.iter().filter(|p| p.addr != addr && self.state(&p.addr).outlier.locked().is_ejected(now)).count();
        if !may_eject(ejected, peers.len(), config.max_ejected_percent) {
            return false;
        }
        let until = state.outlier.locked().eject(now, config);
        tracing::warn!(endpoint = addr, for_ms = until - now, "ejected endpoint after consecutive errors");
        true
    }
}
