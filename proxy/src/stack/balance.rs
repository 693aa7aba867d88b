//! Balance: each attempt goes to an endpoint of the routed version, picked by the service's
//! load balancer (P2C over peak EWMA by default) among those not ejected; its latency and
//! outcome feed the endpoint's EWMA and outlier detection, which may eject it.

use super::{Attempt, always_ready, layer_of};
use crate::Shared;
use crate::decide::outlier::Outcome;
use crate::endpoints::InFlight;
use crate::errors::ProxyError;
use crate::metrics::status_class;
use futures::future::{Either, Ready, ready};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready as ready_poll};
use std::time::Instant;

#[derive(Clone)]
pub struct Balance<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Balance<()> {
    pub fn layer(shared: Arc<Shared>) -> Self {
        Balance { inner: (), shared }
    }
}
layer_of!(Balance { shared });

type Answer = Result<http::Response<crate::Body>, ProxyError>;

impl<S> tower_service::Service<Attempt> for Balance<S>
where
    S: tower_service::Service<Attempt, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = Either<Ready<Answer>, Reported<S::Future>>;
    always_ready!();

    fn call(&mut self, mut attempt: Attempt) -> Self::Future {
        let route = attempt.route.clone();
        let lb = route.service.traffic.load_balancer;
        let Some((at, in_flight)) = self.shared.endpoints.pick(lb, route.endpoints(), route.version()) else {
            let (service, version) = (route.service.name.clone(), route.version().to_string());
            return Either::Left(ready(Err(ProxyError::NoEndpoints { service, version })));
        };
        attempt.endpoint = Some(at);
        // Only a span reads what was picked: without export the request path skips the stores.
        if self.shared.tracer.is_some() {
            route.pick(at);
        }
        let answer = self.inner.call(attempt);
        let (shared, sent) = (self.shared.clone(), crate::clock::now());
        Either::Right(Reported { answer, report: Some(Report { shared, route, at, in_flight, sent }) })
    }
}

pin_project_lite::pin_project! {
    /// An attempt's answer, reported to its endpoint's state when it comes.
    pub struct Reported<F> {
        #[pin]
        answer: F,
        report: Option<Report>,
    }
}

pub struct Report {
    shared: Arc<Shared>,
    route: Arc<super::Route>,
    /// The endpoint's index in the route's endpoints.
    at: usize,
    in_flight: InFlight,
    sent: Instant,
}

impl<F: Future<Output = Answer>> Future for Reported<F> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.project();
        let result = ready_poll!(this.answer.poll(cx));
        Poll::Ready(match this.report.take() {
            Some(report) => report.record(result),
            None => result,
        })
    }
}

impl Report {
    /// Latency and outcome into the endpoint's EWMA and outlier detection; attempts and
    /// ejections into the metrics. A gRPC call's status that comes in its trailers judges the
    /// endpoint when they pass (its latency is the response head's, as for any other).
    fn record(self, result: Answer) -> Answer {
        let Report { shared, route, at, in_flight, sent } = self;
        let (outcome, status) = match &result {
            Ok(resp) => {
                let outcome = match crate::grpc::early_status(&route.service, resp) {
                    Some(code) => Outcome::of_grpc(code),
                    None if crate::grpc::in_trailers(&route.service, resp) => {
                        route.metrics.attempt(status_class(resp.status()));
                        shared.endpoints.observe_latency(&in_flight, (sent, crate::clock::now()));
                        let judge = move |code| {
                            // A call the client cancelled says nothing of the endpoint.
                            if code != crate::grpc::CANCELLED {
                                judge(&shared, &route, at, &in_flight, Outcome::of_grpc(code));
                            }
                        };
                        return result.map(|resp| {
                            resp.map(|body| {
                                let watched = crate::grpc::Watched::new(body, Box::new(judge));
                                http_body_util::BodyExt::boxed_unsync(watched)
                            })
                        });
                    }
                    None => Outcome::of_status(resp.status().as_u16()),
                };
                (outcome, status_class(resp.status()))
            }
            // The client's body broke: the endpoint did nothing wrong, and is not judged on it.
            Err(e @ ProxyError::BadRequestBody(_)) => {
                route.metrics.attempt(e.status_label());
                return result;
            }
            Err(e) => (Outcome::GatewayError, attempt_failure(e)),
        };
        route.metrics.attempt(status);
        shared.endpoints.observe_latency(&in_flight, (sent, crate::clock::now()));
        judge(&shared, &route, at, &in_flight, outcome);
        result
    }
}

/// The outcome into the endpoint's outlier detection; an ejection into the metrics.
fn judge(shared: &Shared, route: &super::Route, at: usize, in_flight: &InFlight, outcome: Outcome) {
    let (service, addr) = (&route.service, &route.endpoints()[at].addr);
    if shared.endpoints.judge(in_flight, addr, outcome, route.endpoints(), &service.traffic.outlier) {
        let labels = [("dst_service", service.name.as_str()), ("endpoint", addr.as_str())];
        shared.metrics.inc("trellis_proxy_ejections_total", &labels);
    }
}

/// The status label of an attempt that got no response.
fn attempt_failure(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::Upstream { source, .. } if source.is_connect() => "connect-failure",
        ProxyError::Upstream { .. } => "reset",
        ProxyError::Timeout(_) => "timeout",
        other => other.kind(),
    }
}
