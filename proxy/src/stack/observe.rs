//! Observe: counts and times every request once (the "effective" request, as Linkerd counts
//! it), logs it when access logs are on, makes sure it carries a `traceparent`, and turns a
//! proxy error into its response: the one place where that happens.

use super::{Failed, Routed, always_ready, layer_of};
use crate::ReqBody;
use crate::{Arrival, Shared};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use trellis_model::telemetry::Direction;

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
    direction: Direction,
}

impl Observe<()> {
    pub fn layer(shared: Arc<Shared>, direction: Direction) -> Self {
        Observe { inner: (), shared, direction }
    }
}
layer_of!(Observe { shared, direction });

impl<S> tower_service::Service<http::Request<ReqBody>> for Observe<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = Routed, Error = Failed>,
{
    type Response = http::Response<crate::Body>;
    type Error = Infallible;
    type Future = Observed<S::Future>;
    always_ready!();

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let arrival = Arrival::new(&self.shared, self.direction, &mut req);
        let answer = self.inner.call(req);
        Observed { answer, done: Some((self.shared.clone(), arrival)) }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, counted, timed and logged when it comes.
    pub struct Observed<F> {
        #[pin]
        answer: F,
        done: Option<(Arc<Shared>, Arrival)>,
    }
}

impl<F: Future<Output = Result<Routed, Failed>>> Future for Observed<F> {
    type Output = Result<http::Response<crate::Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.answer.poll(cx));
        let Some((shared, arrival)) = this.done.take() else { return Poll::Pending };
        let (result, dest) = match answer {
            Ok((resp, dest)) => (Ok(resp), dest),
            Err(Failed { error, dest }) => (Err(error), dest),
        };
        Poll::Ready(Ok(shared.complete(arrival, &dest, result)))
    }
}
