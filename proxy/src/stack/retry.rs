//! Retry: a request whose attempt failed as the rule's `retry.on` names is sent again, up to
//! `retry.attempts` more times, when its body can be replayed, and only while the service's
//! retry budget allows, so that an outage never multiplies the load on it. A non-idempotent
//! request (POST, PATCH...) the upstream may have processed is not sent twice unless the rule
//! says it may be (`nonIdempotent`): only a connection that could not be made is retried.

use super::{Attempt, BoxFuture, Target, always_ready, layer_of};
use crate::Shared;
use crate::client::Replay;
use crate::errors::ProxyError;
use crate::sync::Locked;
use std::sync::Arc;
use trellis_model::ServiceConfig;
use trellis_model::config::RetryOn;

#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Retry<()> {
    pub fn layer(shared: Arc<Shared>) -> Self {
        Retry { inner: (), shared }
    }
}
layer_of!(Retry { shared });

type Answer = Result<http::Response<crate::Body>, ProxyError>;

impl<S> tower_service::Service<Target<Replay>> for Retry<S>
where
    S: tower_service::Service<Attempt, Response = http::Response<crate::Body>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = BoxFuture<Answer>;
    always_ready!();

    fn call(&mut self, Target { parts, body, route }: Target<Replay>) -> Self::Future {
        let (shared, mut inner) = (self.shared.clone(), self.inner.clone());
        Box::pin(async move {
            let parts = Arc::new(parts);
            let (service, rule) = (&route.service, route.rule());
            // Only a route placed in this very config has a rule: the budget is always there.
            let budget = route.budget(&shared);
            let now = shared.endpoints.now_ms();
            if let Some(b) = budget {
                b.locked().deposit(now);
            }
            let (mut body, mut attempts) = (body, 0);
            loop {
                // A buffered body can be sent again; a streamed one only once.
                let again = body.again();
                let attempt = Attempt { parts: parts.clone(), body, route: route.clone(), endpoint: None };
                let result = inner.call(attempt).await;
                attempts += 1;
                let Some(next) = again.and_then(Replay::still) else { return result };
                let safe = rule.retry.non_idempotent || parts.method.is_idempotent();
                if attempts > rule.retry.attempts || !should_retry(&result, service, &rule.retry.on, safe) {
                    return result;
                }
                let metrics = &shared.metrics;
                let now = shared.endpoints.now_ms();
                if !budget.as_ref().is_some_and(|b| b.locked().try_withdraw(now)) {
                    let labels = [("dst_service", service.name.as_str()), ("result", "budget_exhausted")];
                    metrics.inc("trellis_proxy_retries_total", &labels);
                    return result;
                }
                metrics.inc("trellis_proxy_retries_total", &[("dst_service", &service.name), ("result", "sent")]);
                body = next;
            }
        })
    }
}

/// The retry conditions, as Envoy names them: `5xx` includes gateway errors, connect failures
/// and resets; `gateway-error` includes connect failures and per-try timeouts. Unless a repeat
/// is `safe`, only a connection that could not be made counts: nothing reached the upstream.
/// A trailers-only gRPC response is retried when its status is one the conditions name
/// (`unavailable`, `resource-exhausted`, `cancelled`, `deadline-exceeded`, `internal`).
pub fn should_retry(result: &Answer, service: &ServiceConfig, on: &[RetryOn], safe: bool) -> bool {
    let has = |c| on.contains(&c);
    // A gRPC condition is the server's own word on the call, and every gRPC call is a POST:
    // it is retried whatever the method.
    if let Ok(resp) = result
        && let Some(code) = crate::grpc::early_status(service, resp)
    {
        return on.iter().any(|c| c.grpc_code() == Some(code));
    }
    match result {
        Err(ProxyError::Upstream { source, .. }) if !safe && source.is_connect() => {
            has(RetryOn::ConnectFailure) || has(RetryOn::GatewayError) || has(RetryOn::ServerError)
        }
        _ if !safe => false,
        Ok(resp) => {
            let s = resp.status().as_u16();
            (has(RetryOn::ServerError) && (500..600).contains(&s))
                || (has(RetryOn::GatewayError) && (502..=504).contains(&s))
        }
        Err(ProxyError::Timeout(_)) => has(RetryOn::GatewayError) || has(RetryOn::ServerError),
        Err(ProxyError::Upstream { source, .. }) if source.is_connect() => {
            has(RetryOn::ConnectFailure) || has(RetryOn::GatewayError) || has(RetryOn::ServerError)
        }
        Err(ProxyError::Upstream { .. }) => has(RetryOn::Reset) || has(RetryOn::ServerError),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::UpstreamError;

    fn service(protocol: trellis_model::config::Protocol) -> ServiceConfig {
        let mut svc = ServiceConfig::new("svc", &["v1"], vec![]);
        svc.protocol = protocol;
        svc
    }

    fn status(code: u16) -> Answer {
        let mut resp = http::Response::new(crate::errors::text(""));
        *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
        Ok(resp)
    }

    fn upstream(e: UpstreamError) -> Answer {
        Err(ProxyError::Upstream { addr: "10.0.0.1:80".into(), source: e })
    }

    #[test]
    fn the_conditions_name_what_envoy_names() {
        use RetryOn::*;
        let http = service(Default::default());
        let connect = || upstream(UpstreamError::connect("refused".into()));
        let reset = || upstream(UpstreamError::closed());
        for (result, on, retried) in [
            (status(503), vec![GatewayError], true),
            (status(500), vec![GatewayError], false),
            (status(500), vec![ServerError], true),
            (status(404), vec![ServerError, GatewayError, ConnectFailure, Reset], false),
            (connect(), vec![ConnectFailure], true),
            (connect(), vec![GatewayError], true),
            (connect(), vec![Reset], false),
            (reset(), vec![Reset], true),
            (reset(), vec![ServerError], true),
            (reset(), vec![GatewayError, ConnectFailure], false),
            (Err(ProxyError::Timeout(100)), vec![GatewayError], true),
            (Err(ProxyError::Timeout(100)), vec![Reset, ConnectFailure], false),
            (Err(ProxyError::NoRoute("a".into())), vec![ServerError, GatewayError, ConnectFailure, Reset], false),
        ] {
            let what = format!("{:?} on {on:?}", result.as_ref().map(|r| r.status()).map_err(|e| e.kind()));
            assert_eq!(should_retry(&result, &http, &on, true), retried, "{what}");
        }
    }

    #[test]
    fn a_trailers_only_grpc_status_is_retried_when_a_condition_names_it_whatever_the_method() {
        use RetryOn::*;
        let (rpc, http) = (service(trellis_model::config::Protocol::Grpc), service(Default::default()));
        let grpc = |code: &'static str| -> Answer {
            let mut resp = http::Response::new(crate::errors::text(""));
            resp.headers_mut().insert("grpc-status", http::HeaderValue::from_static(code));
            Ok(resp)
        };
        assert!(should_retry(&grpc("14"), &rpc, &[Unavailable], false), "a POST, as every gRPC call");
        assert!(should_retry(&grpc("8"), &rpc, &[ResourceExhausted], false));
        assert!(should_retry(&grpc("1"), &rpc, &[Cancelled], false));
        assert!(should_retry(&grpc("4"), &rpc, &[DeadlineExceeded], false));
        assert!(should_retry(&grpc("13"), &rpc, &[Internal], false));
        assert!(!should_retry(&grpc("14"), &rpc, &[Internal, ServerError, GatewayError, Reset], true));
        assert!(!should_retry(&grpc("0"), &rpc, &[Unavailable, Internal], true), "OK is done");
        assert!(!should_retry(&grpc("5"), &rpc, &[Unavailable, Internal], true), "NOT_FOUND is the caller's");
        assert!(!should_retry(&grpc("14"), &http, &[Unavailable], true), "not a gRPC service: not looked at");
    }

    #[test]
    fn a_request_that_may_have_been_processed_is_not_repeated_unless_it_is_safe() {
        use RetryOn::*;
        let http = service(Default::default());
        let all = [ServerError, GatewayError, ConnectFailure, Reset];
        let reset = upstream(UpstreamError::closed());
        assert!(!should_retry(&reset, &http, &all, false), "a POST the upstream may have received");
        assert!(!should_retry(&status(503), &http, &all, false));
        assert!(!should_retry(&Err(ProxyError::Timeout(100)), &http, &all, false));
        assert!(should_retry(&upstream(UpstreamError::connect("refused".into())), &http, &all, false), "never sent");
        assert!(should_retry(&reset, &http, &all, true));
    }

    #[test]
    fn a_budget_is_one_per_service_and_setting_and_outlives_a_config() {
        let shared = Shared::new(crate::Settings::new("a", "v1", "127.0.0.1:1".parse().unwrap(), "http://x"));
        let tight = trellis_model::config::RetryBudget { ratio: 0.1, min_per_second: 1, window_ms: 10_000 };
        let loose = trellis_model::config::RetryBudget { ratio: 0.5, ..tight.clone() };
        let first = shared.budget("svc", &tight);
        first.locked().deposit(0);
        // Another rule with another setting gets its own, and does not reset the first (it was
        // recreated whenever rules of one service alternated).
        let other = shared.budget("svc", &loose);
        assert!(!Arc::ptr_eq(&first, &other));
        assert!(Arc::ptr_eq(&first, &shared.budget("svc", &tight)), "the same setting, the same count");
        assert!(!Arc::ptr_eq(&first, &shared.budget("other", &tight)));
    }
}
