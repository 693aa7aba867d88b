//! A bound on what is held at once, taken without waiting: a request either gets a pass at
//! once or is refused. That is all the shed limit, a service's `maxPendingRequests` and the
//! mirror limit need; a semaphore also queues waiters, and so takes a lock on every release,
//! on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Gate {
    held: AtomicUsize,
    limit: usize,
}

/// One of a gate's places, given back when dropped.
#[must_use]
pub struct Pass(Arc<Gate>);

impl Gate {
    pub fn new(limit: usize) -> Self {
        Gate { held: AtomicUsize::new(0), limit }
    }

    /// A place, or `None` when all `limit` are held.
    pub fn try_pass(self: &Arc<Self>) -> Option<Pass> {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            if held >= self.limit {
                return None;
            }
            // Counted only if no one else moved it: never more than `limit` out at once, and
            // no refusal for a count a refused caller inflated for a moment.
            match self.held.compare_exchange_weak(held, held + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(Pass(self.clone())),
                Err(now) => held = now,
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(gate: &Gate) -> usize {
        gate.held.load(Ordering::Relaxed)
    }

    #[test]
    fn at_most_limit_passes_are_out_and_a_returned_one_is_given_again() {
        let gate = Arc::new(Gate::new(2));
        let (a, b) = (gate.try_pass().unwrap(), gate.try_pass().unwrap());
        assert!(gate.try_pass().is_none());
        drop(a);
        let c = gate.try_pass().expect("a returned place is free");
        assert!(gate.try_pass().is_none());
        drop((b, c));
        assert_eq!(held(&gate), 0);
        assert!(Arc::new(Gate::new(0)).try_pass().is_none(), "a limit of 0 lets nothing through");
    }

    #[test]
    fn threads_racing_for_places_never_hold_more_than_the_limit() {
        let gate = Arc::new(Gate::new(3));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gate, most) = (gate.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(pass) = gate.try_pass() {
                            most.fetch_max(held(&gate), Ordering::Relaxed);
                            drop(pass);
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(most.load(Ordering::Relaxed) <= 3);
        assert_eq!(held(&gate), 0);
    }
}
