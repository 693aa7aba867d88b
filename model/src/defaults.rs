//! Every default of the mesh, in one place. They are the safe choice, not the permissive one:
//! retries are budgeted, outlier ejection is on, mTLS is strict.

use crate::config::{
    AccessMode, ConnectionLimits, LoadBalancer, MtlsMode, OutlierConfig, RetryBudget, RetryConfig, RetryOn, Timeouts,
};

/// Whole-request timeout when none is configured.
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;

/// Retries: only failures that are safe to retry, within a budget that caps retries at 20% of
/// requests (with a floor of 10 per second over a 10 s window), so an outage never multiplies
/// load — Linkerd's default budget.
pub fn retry() -> RetryConfig {
    RetryConfig {
        attempts: 2,
        on: vec![RetryOn::ConnectFailure, RetryOn::Reset, RetryOn::GatewayError],
        budget: RetryBudget { ratio: 0.2, min_per_second: 10, window_ms: 10_000 },
        non_idempotent: false,
    }
}

pub fn timeouts() -> Timeouts {
    Timeouts { request_ms: REQUEST_TIMEOUT_MS, per_try_ms: None }
}

pub const LOAD_BALANCER: LoadBalancer = LoadBalancer::P2cEwma;

/// Outlier ejection on: 5 consecutive errors eject an endpoint for 30 s × times ejected, never
/// more than half of the endpoints at once.
pub fn outlier() -> OutlierConfig {
    OutlierConfig {
        enabled: true,
        consecutive_5xx: 5,
        consecutive_gateway_errors: 5,
        interval_ms: 10_000,
        base_ejection_ms: 30_000,
        max_ejected_percent: 50,
    }
}

pub fn connection_limits() -> ConnectionLimits {
    ConnectionLimits { max_connections: 1024, max_pending_requests: 1024, max_requests_per_connection: 0 }
}

pub const MTLS: MtlsMode = MtlsMode::Strict;
/// Without an AccessPolicy, any authenticated mesh identity may call a service.
pub const ACCESS: AccessMode = AccessMode::Authenticated;
