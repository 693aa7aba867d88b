//! The proxy side of the control plane: `POST /fleet/v1/stream` (register and receive config
//! as newline-delimited JSON; upgraded, ACKs and reports come back on the same connection),
//! `/fleet/v1/ack`, `/fleet/v1/telemetry`, and `/fleet/v1/certify` (a join token and a CSR for
//! a certificate). With identities on, all but `certify` answer only proxies on the fleet's
//! mTLS listener, each for its own service.

mod duplex;

use crate::api::{ApiError, ApiJson};
use crate::fleet::tls::FleetPeer;
use crate::fleet::{Fleet, ping_line};
use crate::state::AppState;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::time::Duration;
use trellis_model::fleet::{self, Ack, CertifyRequest, Issued, Registration};

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route(fleet::STREAM, axum::routing::post(open_stream))
        .route(fleet::ACK, axum::routing::post(ack))
        .route(fleet::TELEMETRY, axum::routing::post(telemetry))
        .route(fleet::CERTIFY, axum::routing::post(certify))
}

async fn certify(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CertifyRequest>,
) -> Result<axum::Json<Issued>, ApiError> {
    let Some(ca) = &state.ca else {
        return Err(ApiError::NotFound("this control plane issues no certificates (identity is off)".into()));
    };
    match ca.certify(&req.service, &req.token, &req.csr) {
        Ok(issued) => {
            state.fleet.certified(&req.proxy_id, &issued.identity, issued.not_after_ms);
            tracing::info!(proxy_id = %req.proxy_id, identity = %issued.identity, "certificate issued");
            Ok(axum::Json(Issued { fleet_port: state.fleet_port, ..issued }))
        }
        Err(e @ crate::identity::IdentityError::BadToken(_)) => {
            let summary = format!("certificate for proxy {} refused: {e}", req.proxy_id);
            state.audit.system(
                "identity.denied",
                Some(&req.service),
                summary,
                serde_json::json!({ "proxy_id": req.proxy_id }),
            );
            Err(ApiError::Forbidden(e.to_string()))
        }
        Err(e) => Err(ApiError::invalid("cannot issue a certificate", e.to_string())),
    }
}

/// With identities on, only a proxy whose certificate names `service` may speak for it: it
/// registers, acknowledges and reports as its own service, or not at all.
fn authorize(state: &AppState, peer: Option<&FleetPeer>, service: &str, proxy_id: &str) -> Result<(), ApiError> {
    if state.ca.is_none() {
        return Ok(());
    }
    match peer {
        Some(FleetPeer(certified, _)) if certified == service => Ok(()),
        Some(FleetPeer(certified, _)) => {
            let summary = format!("proxy {proxy_id}, certified as {certified}, tried to speak for {service}");
            let detail = serde_json::json!({ "proxy_id": proxy_id, "certified": certified, "claimed": service });
            state.audit.system("identity.denied", Some(service), summary, detail);
            Err(ApiError::Forbidden(format!("a proxy certified as {certified} may not speak for {service}")))
        }
        None => Err(ApiError::Unauthorized(format!(
            "this control plane knows proxies by their certificates: start {proxy_id} with TRELLIS_JOIN_TOKEN \
             (trellis join-token {service}); it then talks to the fleet's mTLS port"
        ))),
    }
}

/// The connection, when the proxy asked for the duplex stream (`Upgrade: trellis-fleet/1`,
/// HTTP/1.1 only).
struct Upgrade(Option<hyper::upgrade::OnUpgrade>);

impl<S: Sync> axum::extract::FromRequestParts<S> for Upgrade {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        // A list of protocols, whose names are compared without case (RFC 9110 §7.8).
        let asked = parts.headers.get_all(http::header::UPGRADE).iter().any(|v| {
            v.to_str().is_ok_and(|list| list.split(',').any(|p| p.trim().eq_ignore_ascii_case(fleet::UPGRADE)))
        });
        Ok(Upgrade(if asked { parts.extensions.remove() } else { None }))
    }
}

async fn open_stream(
    State(state): State<AppState>,
    peer: Option<Extension<FleetPeer>>,
    Upgrade(upgrade): Upgrade,
    ApiJson(reg): ApiJson<Registration>,
) -> Result<Response, ApiError> {
    check_registration(&reg)?;
    authorize(&state, peer.as_deref(), &reg.service, &reg.proxy_id)?;
    let duplex = upgrade.is_some();
    tracing::info!(proxy_id = %reg.proxy_id, service = %reg.service, version = %reg.version, duplex, "proxy connected");
    let (service, incremental, sent) = (reg.service.clone(), reg.incremental, reg.resume.clone());

    let asked = reg.max_ping_every_s.unwrap_or(fleet::DEFAULT_PING_EVERY_S);
    let ping_every = crate::fleet::ping_every_s(state.fleet.local_count()).min(asked).max(1);
    // Certified by whichever replica: its callers learn its identity from this one too.
    if let Some(Extension(FleetPeer(_, cert))) = &peer {
        state.fleet.certified(&reg.proxy_id, &cert.identity, cert.not_after);
    }
    let opener = duplex::Opener::new(reg.proxy_id.clone(), reg.service.clone());
    let guard = state.fleet.connected(reg);
    let to = Receiver { service, incremental, sent, ping_every: Duration::from_secs(ping_every) };
    let stream = config_stream(state.fleet.clone(), to, state.shutdown.clone(), guard);
    let ping_every = (http::HeaderName::from_static(fleet::PING_EVERY_HEADER), ping_every.to_string());
    if let Some(upgrade) = upgrade {
        tokio::spawn(duplex::serve(upgrade, Box::pin(stream), state.clone(), opener));
        let headers = [
            (http::header::UPGRADE, fleet::UPGRADE.to_string()),
            (http::header::CONNECTION, "upgrade".to_string()),
            ping_every,
        ];
        return Ok((http::StatusCode::SWITCHING_PROTOCOLS, headers).into_response());
    }
    let headers = [(http::header::CONTENT_TYPE, "application/x-ndjson".to_string()), ping_every];
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// Who a stream sends to: a proxy of `service`, whether it takes deltas, the version it was
/// last sent (or said it runs), and how often it is pinged when idle.
struct Receiver {
    service: String,
    incremental: bool,
    sent: Option<String>,
    ping_every: Duration,
}

/// Sends the current config (nothing when the proxy resumed with it), then what changes, with
/// pings in between. Only a change of its own service's slice wakes the stream. Ends at
/// shutdown, and at a ping once the stream no longer serves its proxy (replaced, or the proxy
/// dropped as hung: it then registers again); dropping it (the proxy went away) drops the
/// guard, which marks the proxy disconnected.
fn config_stream(
    fleet: Fleet,
    to: Receiver,
    shutdown: crate::sync::Shutdown,
    guard: crate::fleet::StreamGuard,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let mut slice = fleet.subscribe_slice(&to.service);
    slice.mark_changed();
    futures::stream::unfold(
        (slice, shutdown, guard, to, fleet),
        |(mut slice, mut shutdown, guard, mut to, fleet)| async move {
            loop {
                // After a restart nothing is sent until the previous fleet is back, so no proxy
                // gets a config listing only the endpoints that reconnected first.
                if !fleet.is_released() {
                    tokio::select! {
                        _ = fleet.released() => {}
                        () = shutdown.recv() => return None,
                    }
                }
                tokio::select! {
                    changed = slice.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                        let lines = slice.borrow_and_update().clone();
                        if let Some(line) = lines.and_then(|l| l.next(&mut to.sent, to.incremental)) {
                            return Some((Ok(line), (slice, shutdown, guard, to, fleet)));
                        }
                    }
                    _ = tokio::time::sleep(to.ping_every) => {
                        if !guard.serves() {
                            return None;
                        }
                        return Some((Ok(ping_line()), (slice, shutdown, guard, to, fleet)));
                    }
                    () = shutdown.recv() => return None,
                }
            }
        },
    )
}

fn check_registration(reg: &Registration) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for (field, value) in [("proxy_id", &reg.proxy_id), ("service", &reg.service), ("version", &reg.version)] {
        if value.is_empty() || value.len() > 253 {
            problems.push(format!("{field} must be 1 to 253 characters"));
        }
    }
    if reg.inbound_addr.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!("inbound_addr {:?} is not an address like 10.0.0.7:4143", reg.inbound_addr));
    }
    if problems.is_empty() { Ok(()) } else { Err(ApiError::invalid("invalid registration", problems.join("; "))) }
}

async fn ack(
    State(state): State<AppState>,
    peer: Option<Extension<FleetPeer>>,
    ApiJson(ack): ApiJson<Ack>,
) -> Result<http::StatusCode, ApiError> {
    if let Some(service) = state.fleet.service_of(&ack.proxy_id) {
        authorize(&state, peer.as_deref(), &service, &ack.proxy_id)?;
    }
    state.fleet.ack(&ack)?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// A proxy's counts since its last accepted report. Refusals are counted by reason and never
/// touch the aggregates. When intake has fallen behind, the report is not read: the proxy is
/// heard from (its heartbeat) and asked to come back later with its counts.
async fn telemetry(
    State(state): State<AppState>,
    peer: Option<Extension<FleetPeer>>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    use crate::telemetry::Rejection;
    use axum::extract::FromRequest;
    let Some(_in_hand) = state.telemetry.admit() else {
        if let Some(proxy) = req.headers().get(fleet::PROXY_ID_HEADER).and_then(|v| v.to_str().ok()) {
            state.fleet.heartbeat(proxy);
        }
        let retry = [(http::header::RETRY_AFTER, crate::telemetry::RETRY_AFTER_S.to_string())];
        return Ok((http::StatusCode::TOO_MANY_REQUESTS, retry).into_response());
    };
    let ApiJson(report) =
        ApiJson::<trellis_model::telemetry::Report>::from_request(req, &()).await.inspect_err(|_| {
            state.telemetry.reject(Rejection::Unreadable);
        })?;
    if let Some(service) = state.fleet.service_of(&report.proxy_id) {
        authorize(&state, peer.as_deref(), &service, &report.proxy_id)?;
    }
    let every = take_report(&state, &report)?;
    Ok((http::StatusCode::NO_CONTENT, [(fleet::REPORT_EVERY_HEADER, every.to_string())]).into_response())
}

/// Counts a report of an authorized proxy (a repeat of one counted is taken as it was): the
/// seconds the proxy should wait before its next.
fn take_report(state: &AppState, report: &trellis_model::telemetry::Report) -> Result<u64, ApiError> {
    use crate::telemetry::Rejection;
    if let Err(why) = report.check() {
        state.telemetry.reject(Rejection::Invalid);
        return Err(ApiError::invalid("invalid telemetry report", why));
    }
    let Some(service) = state.fleet.heartbeat(&report.proxy_id) else {
        state.telemetry.reject(Rejection::UnknownProxy);
        return Err(ApiError::NotFound(format!(
            "unknown proxy `{}`: it must open a config stream first",
            report.proxy_id
        )));
    };
    match state.telemetry.ingest(&service, report, crate::now_ms() as u64 / 1000) {
        Ok(()) => state.telemetry_fresh.store(true, std::sync::atomic::Ordering::Relaxed),
        // A repeated report was already counted: acknowledged so the proxy moves on.
        Err(Rejection::Stale) => {}
        Err(why) => return Err(ApiError::invalid("telemetry report refused", why.as_str())),
    }
    Ok(crate::telemetry::report_every_s(state.fleet.local_count()))
}
