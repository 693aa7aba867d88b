//! Rate limits on the inbound side: the service's own limit (TrafficPolicy `rateLimit`) and
//! that of the route rule the request matches, each a set of token buckets
//! ([`crate::decide::ratelimit`]). Beyond them a request is answered 429 with `Retry-After`
//! before the application sees it, and counted by caller. Only admitted callers get here:
//! access is decided first, so a denied caller spends no one's tokens.

use super::access::caller;
use super::always_ready;
use crate::ReqBody;
use crate::Shared;
use crate::decide::ratelimit::{Refused, Scope};
use crate::decide::split;
use crate::errors::ProxyError;
use crate::sync::Locked;
use futures::future::{Either, Ready, ready};
use std::sync::Arc;

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl RateLimit<()> {
    pub fn layer(shared: Arc<Shared>) -> Self {
        RateLimit { inner: (), shared }
    }
}
super::layer_of!(RateLimit { shared });

impl<S> RateLimit<S> {
    fn admit(&self, req: &http::Request<ReqBody>) -> Result<(), ProxyError> {
        let applied = self.shared.config.load();
        let own = &self.shared.settings.service;
        if !applied.is_rate_limited(own) {
            return Ok(());
        }
        let Some(service) = applied.service(own) else { return Ok(()) };
        let facts =
            split::RequestFacts { method: req.method().as_str(), path: req.uri().path(), headers: req.headers() };
        let rule = split::select_rule(&applied, service, &facts).map(|(i, _)| i);
        let caller = caller(req);
        let (now_us, who) = (crate::clock::micros(), caller.label());
        let of_rule = rule.and_then(|i| applied.limiter(service, Some(i), &self.shared));
        let of_service = applied.limiter(service, None, &self.shared);
        // A request must fit both; one refused by either spends no token of the other.
        let mut admitted: Option<&crate::SharedLimiter> = None;
        for limiter in [of_rule, of_service].into_iter().flatten() {
            let mut l = limiter.locked();
            let Err(Refused { scope, retry_after_us }) = l.admit(who, now_us) else {
                admitted = Some(limiter);
                continue;
            };
            let by = l.config().by.clone();
            drop(l);
            if let Some(earlier) = admitted {
                earlier.locked().refund(who);
            }
            let (scope, why) = match scope {
                Scope::Total => ("total", "the rate for all callers is spent"),
                Scope::Caller => ("caller", "this caller's rate is spent"),
            };
            self.shared.metrics.rate_limited(who, &by, scope);
            let retry_after_s = retry_after_us.div_ceil(1_000_000).max(1);
            return Err(ProxyError::RateLimited { by, why, retry_after_s });
        }
        Ok(())
    }
}

impl<S> tower_service::Service<http::Request<ReqBody>> for RateLimit<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = Either<Ready<Result<S::Response, ProxyError>>, S::Future>;
    always_ready!();

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        match self.admit(&req) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(e) => Either::Left(ready(Err(e))),
        }
    }
}
