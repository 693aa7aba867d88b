//! OpenTelemetry traces: a span per request each listener handles, exported over OTLP/HTTP
//! (protobuf) to the collector the standard `OTEL_*` variables name.
//!
//! A span's context is the `traceparent` the proxy already propagates: a request's span is a
//! child of its caller's, and the request leaves with the proxy's span as the next hop's
//! parent, so an outbound and an inbound proxy and the applications around them make one
//! trace. Spans wait in a bounded queue for the exporter task; when it is full (a slow or
//! absent collector) a span is dropped and counted, and the request never waits.

mod export;
mod proto;
mod span;

pub use crate::env::otlp::{Root, SETTINGS, Sampler, Settings};
pub use crate::metrics::SpanCounts as Counts;
pub use export::{Exporter, run};
pub(crate) use span::{Span, Started};

use crate::sync::Locked;
use crate::trace::{self, TraceId};
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use trellis_model::telemetry::Direction;

pub struct Tracer {
    settings: Settings,
    queue: Mutex<Vec<Span>>,
    /// Told when a batch is full, so it goes before the schedule says.
    full: tokio::sync::Notify,
    /// An instant and its Unix time in nanoseconds: spans are timed with the instants the
    /// request path reads anyway, and turned into Unix time only when exported.
    epoch: (Instant, u64),
}

impl Tracer {
    pub fn new(settings: Settings) -> Self {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Tracer {
            queue: Mutex::new(Vec::with_capacity(settings.batch)),
            settings,
            full: tokio::sync::Notify::new(),
            epoch: (Instant::now(), unix.as_nanos() as u64),
        }
    }

    /// In place of [`trace::ensure`]: decides whether this request is recorded and, if it
    /// is, starts its span and makes it the next hop's parent. Either way the request leaves
    /// with a valid `traceparent`.
    pub(crate) fn start<B>(
        &self,
        direction: Direction,
        req: &mut http::Request<B>,
        now: Instant,
    ) -> (TraceId, Option<Box<Started>>) {
        let parent = req.headers().get(&trace::TRACEPARENT).and_then(|v| trace::parent(v.as_bytes()));
        let trace = parent.map_or_else(TraceId::random, |p| p.trace);
        if !sample(self.settings.sampler, parent.map(|p| p.sampled), &trace) {
            // Not recorded: a caller's context goes on as it came; a new trace says it is not
            // sampled, so the hops after decide alike.
            if parent.is_none() {
                trace::set(req.headers_mut(), trace, fastrand::u64(1..), false);
            }
            return (trace, None);
        }
        let span = fastrand::u64(1..);
        trace::set(req.headers_mut(), trace, span, true);
        let peer = (direction == Direction::Inbound).then(|| crate::stack::caller_label(req));
        let started = Started {
            trace,
            span,
            parent: parent.map(|p| p.span),
            direction,
            start: now,
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            peer,
        };
        (trace, Some(Box::new(started)))
    }

    /// Queues a finished span, or drops and counts it when the queue is full.
    pub(crate) fn finish(&self, span: Span, counts: &Counts) {
        let mut queue = self.queue.locked();
        if queue.len() >= self.settings.queue {
            counts.dropped.fetch_add(1, Relaxed);
            return;
        }
        queue.push(span);
        if queue.len() == self.settings.batch {
            self.full.notify_one();
        }
    }

    /// Unix time in nanoseconds of an instant read by the request path.
    fn unix_nanos(&self, at: Instant) -> u64 {
        let (instant, unix) = self.epoch;
        match at.checked_duration_since(instant) {
            Some(after) => unix + after.as_nanos() as u64,
            None => unix.saturating_sub(instant.duration_since(at).as_nanos() as u64),
        }
    }

    /// Up to a batch of the queued spans, oldest first.
    fn take(&self) -> Vec<Span> {
        let mut queue = self.queue.locked();
        let n = queue.len().min(self.settings.batch);
        queue.drain(..n).collect()
    }

    fn delay(&self) -> Duration {
        self.settings.delay
    }
}

/// Whether a request is recorded: by the caller's sampled flag when the sampler is
/// parent-based and there is a caller's context, else by the sampler. A ratio keeps a trace
/// by the low 64 bits of its id, so every proxy a trace passes decides it alike.
pub fn sample(sampler: Sampler, parent_sampled: Option<bool>, trace: &TraceId) -> bool {
    let ratio = |r: f64| {
        let low = u64::from_be_bytes(trace.bytes()[8..].try_into().unwrap_or_default());
        r >= 1.0 || (r > 0.0 && low < (r * u64::MAX as f64) as u64)
    };
    let root = |root: Root| match root {
        Root::AlwaysOn => true,
        Root::AlwaysOff => false,
        Root::Ratio(r) => ratio(r),
    };
    match sampler {
        Sampler::AlwaysOn => true,
        Sampler::AlwaysOff => false,
        Sampler::Ratio(r) => ratio(r),
        Sampler::ParentBased(inner) => parent_sampled.unwrap_or_else(|| root(inner)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_based_sampler_follows_the_caller_and_a_ratio_keeps_its_share_of_new_traces() {
        let t = TraceId::random();
        assert!(sample(Sampler::ParentBased(Root::AlwaysOff), Some(true), &t));
        assert!(!sample(Sampler::ParentBased(Root::AlwaysOn), Some(false), &t));
        assert!(sample(Sampler::ParentBased(Root::AlwaysOn), None, &t));
        assert!(!sample(Sampler::AlwaysOff, Some(true), &t), "not parent-based: the caller is not asked");
        assert!(sample(Sampler::Ratio(1.0), None, &t) && !sample(Sampler::Ratio(0.0), None, &t));
        let kept = (0..20_000).filter(|_| sample(Sampler::Ratio(0.25), None, &TraceId::random())).count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 20,000 at 0.25");
        // The same trace, the same decision, on every proxy.
        assert!((0..10).all(|_| sample(Sampler::Ratio(0.5), None, &t) == sample(Sampler::Ratio(0.5), None, &t)));
    }
}
