//! Timeout: the rule's request timeout (or a gRPC caller's `grpc-timeout`, when shorter)
//! around all attempts, and its per-try timeout around each one. A request that runs out is
//! answered 504 (`timeout`), or DEADLINE_EXCEEDED to a gRPC client.

use super::{Attempt, Target, always_ready};
use crate::alarm::{self, Asked};
use crate::errors::ProxyError;
use futures::future::Either;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Timeout<S> {
    inner: S,
}

impl Timeout<()> {
    /// The whole request: `timeouts.request` (on [`Target`]s).
    pub fn request() -> Self {
        Timeout { inner: () }
    }

    /// Each attempt: `timeouts.perTry`, when the rule sets one (on [`Attempt`]s).
    pub fn per_try() -> Self {
        Timeout { inner: () }
    }
}

impl<S> tower_layer::Layer<S> for Timeout<()> {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner }
    }
}

type Answer = Result<http::Response<crate::Body>, ProxyError>;

impl<S, B> tower_service::Service<Target<B>> for Timeout<S>
where
    S: tower_service::Service<Target<B>, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = Limited<S::Future>;
    always_ready!();

    fn call(&mut self, target: Target<B>) -> Self::Future {
        let mut ms = target.route.rule().timeouts.request_ms;
        // A gRPC caller's own deadline, when shorter: never longer than the rule's.
        if target.route.service.protocol == trellis_model::config::Protocol::Grpc
            && let Some(caller) = crate::grpc::timeout_ms(&target.parts.headers)
        {
            ms = ms.min(caller);
        }
        Limited::new(self.inner.call(target), ms)
    }
}

impl<S> tower_service::Service<Attempt> for Timeout<S>
where
    S: tower_service::Service<Attempt, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = Either<S::Future, Limited<S::Future>>;
    always_ready!();

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        match attempt.route.rule().timeouts.per_try_ms {
            Some(ms) => Either::Right(Limited::new(self.inner.call(attempt), ms)),
            None => Either::Left(self.inner.call(attempt)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A future bounded by a deadline: served by the connection's timer where there is one
    /// (see `alarm`), else by a timer of its own.
    pub struct Limited<F> {
        #[pin]
        fut: F,
        deadline: Instant,
        // Boxed: rarely made, and inline it would be copied with every request's future.
        own: Option<Pin<Box<tokio::time::Sleep>>>,
        ms: u64,
    }
}

impl<F: Future> Limited<F> {
    fn new(fut: F, ms: u64) -> Self {
        let deadline = crate::clock::now() + Duration::from_millis(ms);
        Limited { fut, deadline, own: None, ms }
    }
}

impl<F: Future<Output = Answer>> Future for Limited<F> {
    type Output = Answer;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.project();
        if let Poll::Ready(answer) = this.fut.poll(cx) {
            return Poll::Ready(answer);
        }
        if this.own.is_none() {
            match alarm::ask(*this.deadline) {
                Asked::Due => return Poll::Ready(Err(ProxyError::Timeout(*this.ms))),
                Asked::Noted => return Poll::Pending,
                Asked::Unserved => *this.own = Some(Box::pin(tokio::time::sleep_until((*this.deadline).into()))),
            }
        }
        match this.own {
            Some(own) => own.as_mut().poll(cx).map(|()| Err(ProxyError::Timeout(*this.ms))),
            None => Poll::Pending,
        }
    }
}
