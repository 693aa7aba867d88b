//! Buffer: a body with a known length up to 64 KiB is read whole, so that it can be mirrored
//! and sent again; one of unknown length is teed when the rule retries (sent as it comes,
//! with a copy for a retry); a larger one streams through and is sent once.

use super::{BoxFuture, Target, always_ready, layer_of};
use crate::ReqBody;
use crate::client::Replay;
use crate::errors::ProxyError;
use futures::future::Either;
use http_body::Body as _;

#[derive(Clone)]
pub struct Buffer<S> {
    inner: S,
}

impl Buffer<()> {
    pub fn layer() -> Self {
        Buffer { inner: () }
    }
}
layer_of!(Buffer {});

impl<S> tower_service::Service<Target<ReqBody>> for Buffer<S>
where
    S: tower_service::Service<Target<Replay>, Response = http::Response<crate::Body>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = Either<S::Future, BoxFuture<Result<Self::Response, ProxyError>>>;
    always_ready!();

    fn call(&mut self, Target { parts, body, route }: Target<ReqBody>) -> Self::Future {
        // Most requests have no body: nothing to wait for.
        if body.is_end_stream() {
            return Either::Left(self.inner.call(Target { parts, body: Replay::Buffered(Default::default()), route }));
        }
        let mut inner = self.inner.clone();
        Either::Right(Box::pin(async move {
            let body = Replay::read(body, &parts.headers, route.rule().retry.attempts > 0).await?;
            inner.call(Target { parts, body, route }).await
        }))
    }
}
