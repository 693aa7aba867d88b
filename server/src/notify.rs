//! Notifications: the events a `Notification` policy wants, told to its webhook or Slack
//! channel.
//!
//! The audit log is the source: the leader reads the events after a cursor, queues one delivery
//! per (Notification, event) in the database and moves the cursor in the same transaction, then
//! tries each due delivery, retrying with backoff. Deliveries therefore survive a restart and a
//! change of leader, and an event is never queued twice for one target. Each delivery's outcome
//! is itself an audit event (`notification.delivered`, `notification.failed`), and the Rollouts
//! page lists the newest.
//!
//! A webhook gets the event as JSON, signed with HMAC-SHA256 of the body in
//! `X-Trellis-Signature-256` (`sha256=<hex>`, as GitHub signs), with `X-Trellis-Delivery` to
//! tell a repeat; Slack gets its incoming-webhook `text`.

use crate::state::AppState;
use crate::store::{ChainRow, DeliveryRow, NewDelivery};
use bytes::Bytes;
use http_body_util::Full;
use std::collections::BTreeMap;
use std::time::Duration;
use trellis_api::{DeliveryView, RolloutsView};
use trellis_model::config::{NotificationConfig, NotifyEvent, NotifyTarget};

/// How often the leader looks for events and due deliveries.
const TICK: Duration = Duration::from_secs(1);
/// Audit events read per look.
const PAGE: i64 = 500;
/// Tries before a delivery is given up (the waits between them add up to some 20 minutes).
pub const MAX_ATTEMPTS: i64 = 10;
/// A receiver must answer within this.
const TIMEOUT: Duration = Duration::from_secs(10);
const DAY_MS: i64 = 24 * 3_600_000;
/// A trust anchor this close to its end is told about, once a day: replacing it means
/// re-issuing every proxy's certificate, which takes planning.
const ANCHOR_WARNING_MS: i64 = 30 * DAY_MS;
/// The issuing certificate is made anew at every start and lasts 30 days: one this close to
/// its end belongs to a control plane that has run three weeks without a restart.
const ISSUER_WARNING_MS: i64 = 7 * DAY_MS;

/// The deliveries `events` make for `notifications`: one per Notification that wants an event.
pub fn deliveries(events: &[ChainRow], notifications: &BTreeMap<String, NotificationConfig>) -> Vec<NewDelivery> {
    let mut out = Vec::new();
    for e in events {
        for n in notifications.values() {
            let Some(event) = n.wants(&e.kind, e.service.as_deref()) else { continue };
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
            let payload = serde_json::json!({
                "audit_id": e.id,
                "at": e.at,
                "kind": e.kind,
                "actor": e.actor,
                "revision": e.revision,
                "service": e.service,
                "summary": e.summary,
                "detail": detail,
            });
            out.push(NewDelivery {
                notification: n.name.clone(),
                event_id: e.id,
                event: event.name().to_string(),
                service: e.service.clone(),
                target: serde_json::to_string(&n.target).unwrap_or_default(),
                payload: payload.to_string(),
            });
        }
    }
    out
}

/// The wait after the `attempts`-th failed try: 1 s, 2 s, 4 s, ... at most 5 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    (1_000_i64 << attempts.clamp(1, 20).saturating_sub(1)).min(300_000)
}

/// Whether a receiver's answer is worth another try: it was busy or broken, not refusing.
pub fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The body a target gets: the delivery as JSON for a webhook, a line of text for Slack.
pub fn body(target: &NotifyTarget, d: &DeliveryRow) -> Vec<u8> {
    let payload: serde_json::Value = serde_json::from_str(&d.delivery.payload).unwrap_or_default();
    let summary = payload["summary"].as_str().unwrap_or_default();
    match target {
        NotifyTarget::Webhook { .. } => serde_json::json!({
            "delivery": d.id,
            "notification": d.delivery.notification,
            "event": d.delivery.event,
            "service": d.delivery.service,
            "summary": summary,
            "audit": payload,
        })
        .to_string()
        .into_bytes(),
        NotifyTarget::Slack { .. } => {
            let mark = match NotifyEvent::parse(&d.delivery.event) {
                Some(NotifyEvent::RolloutStarted) => ":rocket:",
                Some(NotifyEvent::RolloutStepped) => ":arrow_forward:",
                Some(NotifyEvent::RolloutPaused) => ":double_vertical_bar:",
                Some(NotifyEvent::RolloutAborted) => ":x:",
                Some(NotifyEvent::RolloutCompleted) => ":white_check_mark:",
                Some(NotifyEvent::RevisionRejected) => ":no_entry:",
                Some(NotifyEvent::ProxyNack) => ":warning:",
                Some(NotifyEvent::CertificateExpiring) | None => ":hourglass:",
            };
            let by = payload["actor"].as_str().unwrap_or("trellis");
            let text = format!("{mark} *{}* {} _(by {by})_", d.delivery.event, slack_escape(summary));
            serde_json::json!({ "text": text }).to_string().into_bytes()
        }
    }
}

/// Slack's mrkdwn reads `&`, `<` and `>` as markup.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Where a target's deliveries go and the key they are signed with, from the environment.
fn resolve(target: &NotifyTarget, env: impl Fn(&str) -> Option<String>) -> Result<(String, Option<String>), String> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("{name} is not set"));
    match target {
        NotifyTarget::Webhook { url, url_from, secret_from } => {
            let url = match (url, url_from) {
                (Some(url), _) => url.clone(),
                (None, Some(from)) => var(from)?,
                (None, None) => return Err("the webhook has no URL".into()),
            };
            Ok((url, Some(var(secret_from)?)))
        }
        NotifyTarget::Slack { url_from } => Ok((var(url_from)?, None)),
    }
}

/// The leader's loop: queue what the audit log says, deliver what is due, and warn of a trust
/// anchor nearing its end.
pub async fn run(state: AppState, mut shutdown: crate::sync::Shutdown) {
    let client = match crate::https::client(None) {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "notifications are off: no HTTP client"),
    };
    let mut warned_at = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.recv() => return,
        }
        if !state.cluster.leads() {
            continue;
        }
        warned_at = warn_of_expiry(&state, warned_at);
        if let Err(e) = enqueue(&state).await {
            tracing::warn!(error = %e, "notifications: the audit log could not be read; trying again");
            continue;
        }
        let now = crate::now_ms();
        match state.store.due_deliveries(now, 50).await {
            // At once: a receiver that takes its time holds up no other.
            Ok(due) => {
                futures::future::join_all(due.into_iter().map(|d| deliver(&state, &client, d))).await;
            }
            Err(e) => tracing::warn!(error = %e, "notifications: due deliveries could not be read"),
        }
    }
}

/// Queues the deliveries of the audit events after the cursor, for the Notifications in force
/// now. The cursor starts where the log stood when notifications came (the migration that
/// made them): what happened before is not told.
async fn enqueue(state: &AppState) -> Result<(), crate::store::StoreError> {
    let store = &state.store;
    let Some(cursor) = store.notification_cursor().await? else {
        let last = store.last_audit_id().await?;
        return store.enqueue_deliveries(&[], last, crate::now_ms()).await;
    };
    let events = store.chain_page(cursor, PAGE).await?;
    let Some(last) = events.last().map(|e| e.id) else { return Ok(()) };
    let notifications = state.fleet.mesh().map(|m| m.notifications.clone()).unwrap_or_default();
    store.enqueue_deliveries(&deliveries(&events, &notifications), last, crate::now_ms()).await
}

/// One try of a delivery, and what came of it, stored and, once final, audited.
async fn deliver(state: &AppState, client: &crate::https::Client, mut d: DeliveryRow) {
    let now = crate::now_ms();
    let result = match serde_json::from_str::<NotifyTarget>(&d.delivery.target) {
        Ok(target) => send(client, &target, &d).await,
        Err(e) => Err((format!("unreadable target: {e}"), false)),
    };
    d.attempts += 1;
    match result {
        Ok(()) => (d.state, d.last_error) = ("delivered".into(), None),
        Err((why, retry)) if retry && d.attempts < MAX_ATTEMPTS => {
            d.last_error = Some(why);
            d.next_at = now + backoff_ms(d.attempts);
        }
        Err((why, _)) => (d.state, d.last_error) = ("failed".into(), Some(why)),
    }
    if let Err(e) = state.store.update_delivery(&d, now).await {
        // Tried again at the next look: a receiver may hear of it twice, and can tell by
        // X-Trellis-Delivery.
        return tracing::warn!(error = %e, delivery = d.id, "notifications: an outcome could not be stored");
    }
    if d.state != "pending" {
        audit(state, &d);
    }
    // The Rollouts page shows every try, the ones to be repeated too.
    state.changed();
}

async fn send(client: &crate::https::Client, target: &NotifyTarget, d: &DeliveryRow) -> Result<(), (String, bool)> {
    let (url, secret) = resolve(target, crate::secrets::get).map_err(|e| (e, false))?;
    let body = body(target, d);
    let mut req = http::Request::post(&url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, concat!("trellis/", env!("CARGO_PKG_VERSION")))
        .header("x-trellis-event", d.delivery.event.as_str())
        .header("x-trellis-delivery", d.id.to_string());
    if let Some(secret) = secret {
        req = req.header("x-trellis-signature-256", crate::webhook::sign(secret.as_bytes(), &body));
    }
    let req =
        req.body(Full::new(Bytes::from(body))).map_err(|e| (format!("{url:?} is not a usable URL: {e}"), false))?;
    match tokio::time::timeout(TIMEOUT, client.request(req)).await {
        Err(_) => Err((format!("no answer within {} s", TIMEOUT.as_secs()), true)),
        Ok(Err(e)) => Err((crate::https::with_causes(&e), true)),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            Err((format!("the receiver answered {status}"), retryable(status)))
        }
    }
}

fn audit(state: &AppState, d: &DeliveryRow) {
    let tries = if d.attempts == 1 { "1 try".to_string() } else { format!("{} tries", d.attempts) };
    let about = d.delivery.service.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
    let (kind, summary) = match d.state.as_str() {
        "delivered" => (
            "notification.delivered",
            format!("told {} of {}{about} after {tries}", d.delivery.notification, d.delivery.event),
        ),
        _ => (
            "notification.failed",
            format!(
                "could not tell {} of {}{about} after {tries}: {}",
                d.delivery.notification,
                d.delivery.event,
                d.last_error.as_deref().unwrap_or("?")
            ),
        ),
    };
    let detail = serde_json::json!({
        "delivery": d.id, "notification": d.delivery.notification, "event": d.delivery.event, "audit_id": d.delivery.event_id,
        "attempts": d.attempts, "error": d.last_error,
    });
    state.audit.system(kind, d.delivery.service.as_deref(), summary, detail);
}

/// Records `identity.expiring` (what `certificate-expiring` tells) once a day while the trust
/// anchor ends within 30 days or the issuing certificate within 7. Returns when it last warned.
fn warn_of_expiry(state: &AppState, warned_at: i64) -> i64 {
    let now = crate::now_ms();
    let Some(ca) = &state.ca else { return warned_at };
    if now - warned_at < DAY_MS {
        return warned_at;
    }
    let Some((what, at)) = expiring(now, ca.anchor_not_after_ms, ca.issuer_not_after_ms) else { return warned_at };
    let days = (at - now).max(0) / DAY_MS;
    let summary = format!("the mesh's {what} ({}) expires in {days} day(s)", ca.trust_domain);
    let detail = serde_json::json!({ "certificate": what, "not_after_ms": at, "trust_domain": ca.trust_domain });
    state.audit.system("identity.expiring", None, summary, detail);
    now
}

/// The certificate to warn of at `now`, and when it ends (unix ms): the sooner of the trust
/// anchor within 30 days and the issuing certificate within 7.
pub fn expiring(now: i64, anchor_ms: i64, issuer_ms: i64) -> Option<(&'static str, i64)> {
    [("trust anchor", anchor_ms, ANCHOR_WARNING_MS), ("issuing certificate", issuer_ms, ISSUER_WARNING_MS)]
        .into_iter()
        .filter(|(_, at, warning)| *at > 0 && *at - now < *warning)
        .map(|(what, at, _)| (what, at))
        .min_by_key(|(_, at)| *at)
}

/// The Rollouts view with the newest deliveries.
pub async fn with_deliveries(state: &AppState, mut view: RolloutsView) -> RolloutsView {
    match state.store.recent_deliveries(20).await {
        Ok(rows) => view.deliveries = rows.into_iter().map(delivery_view).collect(),
        Err(e) => tracing::warn!(error = %e, "notification deliveries could not be read"),
    }
    view
}

fn delivery_view(d: DeliveryRow) -> DeliveryView {
    let payload: serde_json::Value = serde_json::from_str(&d.delivery.payload).unwrap_or_default();
    DeliveryView {
        id: d.id,
        notification: d.delivery.notification,
        event: d.delivery.event,
        service: d.delivery.service,
        summary: payload["summary"].as_str().unwrap_or_default().to_string(),
        state: d.state,
        attempts: d.attempts,
        last_error: d.last_error,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

#[cfg(test)]
mod tests;
