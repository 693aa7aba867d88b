//! Prometheus: the control plane's own `/metrics` (the fleet, telemetry intake, identities,
//! the leader's lease, rollouts, the process and the build), and the proxies' admin endpoints
//! as an HTTP service-discovery list (`http_sd_configs`), so one scrape job follows the fleet.

use super::build_fleet;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use std::fmt::Write;
use trellis_model::exposition::{build_info, labels, process};

pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let fleet = build_fleet(&state);
    let (accepted, rejected) = state.telemetry.counters();
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge(&mut out, "trellis_fleet_proxies", "Live proxies.", fleet.total.to_string());
    gauge(
        &mut out,
        "trellis_fleet_proxies_synced",
        "Live proxies running the current revision.",
        fleet.synced.to_string(),
    );
    let name = "trellis_telemetry_reports_total";
    let _ = writeln!(out, "# HELP {name} Telemetry reports accepted.\n# TYPE {name} counter\n{name} {accepted}");
    let name = "trellis_telemetry_rejected_total";
    let _ = writeln!(out, "# HELP {name} Telemetry reports refused, by reason.\n# TYPE {name} counter");
    for (reason, n) in rejected {
        let _ = writeln!(out, "{name}{{{}}} {n}", labels(&[("reason", reason)]));
    }
    let name = "trellis_telemetry_deferred_total";
    let help = "Telemetry reports the proxies were asked to send later, intake having fallen behind (their counts come with a later report).";
    let _ = writeln!(
        out,
        "# HELP {name} {help}
# TYPE {name} counter
{name} {}",
        state.telemetry.deferred()
    );
    // Expiry as timestamps, so an alert can say "less than a week left" (Linkerd's users
    // learned of a silently expired issuer from an outage).
    for (name, what, at) in [
        ("trellis_identity_issuer_expiry_timestamp_seconds", "the issuing certificate", fleet.issuer_expires),
        ("trellis_identity_anchor_expiry_timestamp_seconds", "the trust anchor", fleet.anchor_expires),
    ] {
        if let Some(at) = at {
            gauge(&mut out, name, &format!("When {what} expires."), (at / 1000).to_string());
        }
    }
    let cp = &fleet.control_plane;
    let leads = cp.leader.as_deref() == Some(cp.replica.as_str());
    let name = "trellis_control_plane_leader";
    let _ = writeln!(
        out,
        "# HELP {name} Whether this replica leads the control plane (1) or follows (0).\n# TYPE {name} gauge"
    );
    let _ = writeln!(out, "{name}{{{}}} {}", labels(&[("replica", cp.replica.as_str())]), u8::from(leads));
    if let Some(age) = cp.lease_age_ms {
        let help =
            "Since the leader last renewed its lease (it renews every second; over 3 s a new leader takes over).";
        gauge(&mut out, "trellis_control_plane_lease_age_seconds", help, format!("{:.3}", age as f64 / 1000.0));
    }
    let help = "The leader's fencing token: it grows by one at every change of leader.";
    gauge(&mut out, "trellis_control_plane_term", help, cp.term.to_string());
    let up = cp.replicas.iter().filter(|r| r.up).count();
    gauge(
        &mut out,
        "trellis_control_plane_replicas",
        "Replicas that said they were alive in the last 10 s.",
        up.to_string(),
    );
    let name = "trellis_proxy_certificate_expiry_timestamp_seconds";
    let _ = writeln!(out, "# HELP {name} When each proxy's certificate expires.\n# TYPE {name} gauge");
    for p in &fleet.proxies {
        if let Some(at) = p.cert_expires {
            let _ =
                writeln!(out, "{name}{{{}}} {}", labels(&[("proxy_id", &p.id), ("service", &p.service)]), at / 1000);
        }
    }
    rollouts(&mut out, &state.rollouts.views().await.items);
    process(&mut out, &trellis_host::proc_files());
    build_info(&mut out, "control-plane", env!("CARGO_PKG_VERSION"));
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

/// Each rollout's phase, step, canary weight and last verdict, so alerts can be written on
/// them ("a canary aborted", "paused for an hour").
fn rollouts(out: &mut String, items: &[trellis_api::RolloutView]) {
    const PHASES: [&str; 5] = ["progressing", "awaiting-promotion", "paused", "completed", "aborted"];
    const VERDICTS: [&str; 3] = ["pass", "fail", "inconclusive"];
    let head = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let line = |out: &mut String, name: &str, r: &trellis_api::RolloutView, extra: Option<(&str, &str)>, value: u64| {
        let mut set = vec![("rollout", r.name.as_str()), ("service", r.service.as_str())];
        set.extend(extra);
        let _ = writeln!(out, "{name}{{{}}} {value}", labels(&set));
    };
    head(out, "trellis_rollout_phase", "The rollout's phase: 1 for the one it is in.");
    for r in items {
        for phase in PHASES {
            line(out, "trellis_rollout_phase", r, Some(("phase", phase)), u64::from(r.phase == phase));
        }
    }
    head(out, "trellis_rollout_step", "The step the rollout is at, from 0.");
    items.iter().for_each(|r| line(out, "trellis_rollout_step", r, None, r.step as u64));
    head(out, "trellis_rollout_canary_weight_percent", "The share of traffic the canary gets.");
    items.iter().for_each(|r| line(out, "trellis_rollout_canary_weight_percent", r, None, r.canary_weight.into()));
    head(out, "trellis_rollout_failed_analyses", "Failed analyses since the rollout began.");
    items.iter().for_each(|r| line(out, "trellis_rollout_failed_analyses", r, None, r.failures.into()));
    head(out, "trellis_rollout_last_analysis", "The last analysis's verdict: 1 for the verdict it gave.");
    for r in items {
        let Some(last) = r.analyses.last() else { continue };
        let given = serde_json::to_value(&last.verdict).ok().and_then(|v| v.as_str().map(str::to_string));
        for verdict in VERDICTS {
            let value = u64::from(given.as_deref() == Some(verdict));
            line(out, "trellis_rollout_last_analysis", r, Some(("verdict", verdict)), value);
        }
    }
}

/// One HTTP service-discovery group: where to scrape, and labels to relabel from.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Targets {
    targets: Vec<String>,
    labels: std::collections::BTreeMap<&'static str, String>,
}

/// Every live proxy's admin endpoint (its `/metrics`), as Prometheus's `http_sd_configs`
/// reads it; the `__meta_trellis_*` labels are there to be relabelled into target labels.
pub async fn targets(State(state): State<AppState>) -> Json<Vec<Targets>> {
    let groups = state
        .fleet
        .proxies()
        .into_iter()
        .map(|p| Targets {
            targets: vec![p.admin.clone()],
            labels: [
                ("__meta_trellis_proxy_id", p.id),
                ("__meta_trellis_service", p.service),
                ("__meta_trellis_version", p.version),
                ("__meta_trellis_replica", p.replica.unwrap_or_default()),
            ]
            .into(),
        })
        .collect();
    Json(groups)
}
