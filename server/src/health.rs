//! What `trellis check` asks the control plane (`GET /api/v1/health`): groups of checks, each
//! passing, warning or failing with what was found and a hint, in the manner of `linkerd check`.

use crate::state::AppState;
use crate::sync::Locked;
use serde::{Deserialize, Serialize};

/// A proxy lagging longer than this is a failure rather than a change still rolling out.
const LAG_FAIL_MS: i64 = 30_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub group: String,
    pub name: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when it is not fine.
    pub hint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    /// No check failed (warnings allowed).
    pub ok: bool,
    pub checks: Vec<Check>,
}

fn check(group: &str, name: &str, status: Status, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check {
        group: group.into(),
        name: name.into(),
        status,
        detail: detail.into(),
        hint: if status == Status::Ok { None } else { hint.map(str::to_string) },
    }
}

pub async fn report(state: &AppState) -> Report {
    let now = crate::now_ms();
    let mut checks = vec![check(
        "control plane",
        "the API answers",
        Status::Ok,
        format!("trellis {}", env!("CARGO_PKG_VERSION")),
        None,
    )];

    checks.extend(replica_checks(&state.cluster.view()));

    let revisions = state.revisions();
    let g = "policy";
    checks.push(match &revisions.applied {
        Some(r) => {
            check(g, "a revision is applied", Status::Ok, format!("{} \"{}\"", r.short(), first_line(&r.message)), None)
        }
        None => check(
            g,
            "a revision is applied",
            Status::Fail,
            "no valid revision yet",
            Some("commit a valid policy; `trellis validate` shows what is wrong"),
        ),
    });
    checks.push(match &revisions.rejected {
        None => check(g, "the newest commit is valid", Status::Ok, "yes", None),
        Some(r) => check(
            g,
            "the newest commit is valid",
            Status::Warn,
            format!("{} was rejected: {}", r.short(), r.errors.first().map(|e| e.to_string()).unwrap_or_default()),
            Some("fix it in a new commit; the applied revision stays in force meanwhile"),
        ),
    });
    let git = state.git.locked().clone();
    checks.push(match (&git.error, git.last_ok_ms) {
        (None, Some(at)) => {
            check(g, "git is reachable", Status::Ok, format!("looked {} s ago", (now - at) / 1000), None)
        }
        (None, None) => {
            check(g, "git is reachable", Status::Warn, "not looked at yet", Some("wait a moment after start"))
        }
        (Some(e), _) => check(
            g,
            "git is reachable",
            Status::Fail,
            e.clone(),
            Some("check the repository location, branch and credentials"),
        ),
    });

    let g = "fleet";
    let proxies = state.fleet.proxies();
    checks.push(if proxies.is_empty() {
        check(
            g,
            "proxies are connected",
            Status::Warn,
            "none",
            Some("start trellis-proxy next to each service with TRELLIS_CONTROL_PLANE_URL"),
        )
    } else {
        check(g, "proxies are connected", Status::Ok, format!("{}", proxies.len()), None)
    });
    let lagging: Vec<(&str, i64)> =
        proxies.iter().filter(|p| !p.synced).map(|p| (p.id.as_str(), now - p.lagging_since.unwrap_or(now))).collect();
    let worst = lagging.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
    let names = lagging.iter().map(|(id, ms)| format!("{id} ({} s)", ms / 1000)).collect::<Vec<_>>().join(", ");
    checks.push(match lagging.len() {
        0 => check(
            g,
            "every proxy runs the applied revision",
            Status::Ok,
            format!("{} of {}", proxies.len(), proxies.len()),
            None,
        ),
        _ if worst < LAG_FAIL_MS => check(
            g,
            "every proxy runs the applied revision",
            Status::Warn,
            format!("catching up: {names}"),
            Some("a change is rolling out; look again shortly"),
        ),
        _ => check(
            g,
            "every proxy runs the applied revision",
            Status::Fail,
            format!("lagging: {names}"),
            Some("see the Fleet page and the proxies' logs"),
        ),
    });
    let refused: Vec<String> =
        proxies.iter().filter_map(|p| p.nack.as_ref().map(|why| format!("{}: {why}", p.id))).collect();
    checks.push(if refused.is_empty() {
        check(g, "no proxy refused its config", Status::Ok, "none", None)
    } else {
        check(
            g,
            "no proxy refused its config",
            Status::Fail,
            refused.join("; "),
            Some("the proxy keeps its previous config; fix what it names"),
        )
    });

    if let Some(ca) = &state.ca {
        let g = "identity";
        let day = 86_400_000;
        for (name, at, warn_days) in [
            ("the trust anchor is valid", ca.anchor_not_after_ms, 30),
            ("the issuer is valid", ca.issuer_not_after_ms, 7),
        ] {
            let left = at - now;
            checks.push(if left <= 0 {
                check(
                    g,
                    name,
                    Status::Fail,
                    format!("expired {}", trellis_api::format_time(at)),
                    Some("replace it: proxies cannot be certified"),
                )
            } else if left < warn_days * day {
                check(
                    g,
                    name,
                    Status::Warn,
                    format!("expires in {} h", left / 3_600_000),
                    Some("renew it before it expires (restarting the control plane makes a new issuer)"),
                )
            } else {
                check(g, name, Status::Ok, format!("{} days left", left / day), None)
            });
        }
        let uncertified: Vec<&str> =
            proxies.iter().filter(|p| p.cert_expires.is_none_or(|at| at <= now)).map(|p| p.id.as_str()).collect();
        checks.push(if uncertified.is_empty() {
            check(
                g,
                "every proxy has a valid certificate",
                Status::Ok,
                format!("{} of {}", proxies.len(), proxies.len()),
                None,
            )
        } else {
            check(
                g,
                "every proxy has a valid certificate",
                Status::Warn,
                format!("without one: {}", uncertified.join(", ")),
                Some("give each proxy its service's token: TRELLIS_JOIN_TOKEN=$(trellis join-token SERVICE)"),
            )
        });
    }

    let g = "storage";
    checks.push(match state.store.probe_write().await {
        Ok(()) => check(g, "the database takes writes", Status::Ok, "yes", None),
        Err(e) => check(
            g,
            "the database takes writes",
            Status::Fail,
            e.to_string(),
            Some("check DATABASE_URL and the database server"),
        ),
    });
    let backlog = state.audit.backlog();
    checks.push(match (backlog.bytes, &backlog.error) {
        (0, _) => check(g, "audit events are stored", Status::Ok, "the spool is empty", None),
        (bytes, error) => check(
            g,
            "audit events are stored",
            if error.is_some() { Status::Fail } else { Status::Warn },
            format!("{bytes} bytes wait in the spool{}", error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()),
            Some("nothing is lost: they are written in order once the database answers"),
        ),
    });

    let g = "rollouts";
    for r in state.rollouts.views().await.items {
        let name = format!("rollout {}", r.name);
        let reason = r.reason.clone().unwrap_or_default();
        checks.push(match r.phase.as_str() {
            "paused" => check(
                g,
                &name,
                Status::Warn,
                format!("paused: {reason}"),
                Some("resume or promote it on the Rollouts page"),
            ),
            "aborted" if r.recorded.is_none() => check(
                g,
                &name,
                Status::Warn,
                format!("aborted: {reason}"),
                Some("the outcome is committed to git; fix the canary and start again"),
            ),
            phase => check(g, &name, Status::Ok, format!("{phase}, {}% to {}", r.canary_weight, r.canary), None),
        });
    }

    let ok = checks.iter().all(|c| c.status != Status::Fail);
    Report { ok, checks }
}

/// The control plane's replicas: one leads, with a fresh lease; none has gone quiet.
fn replica_checks(view: &trellis_api::ClusterView) -> Vec<Check> {
    let g = "control plane";
    let lead = match (&view.leader, view.lease_age_ms, &view.error) {
        (_, _, Some(e)) => check(
            g,
            "one replica leads",
            Status::Fail,
            format!("the lease cannot be read: {e}"),
            Some("check the database: rollouts do not move while no replica leads (traffic is not affected)"),
        ),
        (Some(leader), Some(age), None) => {
            let who = if *leader == view.replica { "this replica".to_string() } else { leader.clone() };
            let since = view.leader_since.map(trellis_api::format_time).unwrap_or_default();
            let detail = format!("{who} leads (term {}, since {since}); lease renewed {age} ms ago", view.term);
            check(g, "one replica leads", Status::Ok, detail, None)
        }
        _ => check(
            g,
            "one replica leads",
            Status::Warn,
            "no replica holds the lease right now",
            Some("a replica takes it within 5 s; if this lasts, check that the replicas reach the database"),
        ),
    };
    let down: Vec<String> = view
        .replicas
        .iter()
        .filter(|r| !r.up)
        .map(|r| format!("{} ({}, not heard from for {} s)", r.id, r.address, r.seen_ago_ms / 1000))
        .collect();
    let up = view.replicas.iter().filter(|r| r.up).count();
    let replicas = if down.is_empty() {
        check(g, "every replica is alive", Status::Ok, format!("{up} running; this is {}", view.replica), None)
    } else {
        check(
            g,
            "every replica is alive",
            Status::Warn,
            format!("{up} running; gone quiet: {}", down.join(", ")),
            Some(
                "a stopped replica's proxies move to the others; restart it, or ignore this once it drops off in a minute",
            ),
        )
    };
    vec![lead, replicas]
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_api::{ClusterView, ReplicaView};

    fn replica(id: &str, up: bool) -> ReplicaView {
        ReplicaView {
            id: id.into(),
            address: format!("http://{id}:8080"),
            up,
            seen_ago_ms: if up { 500 } else { 42_000 },
            ..Default::default()
        }
    }

    #[test]
    fn the_replicas_checks_name_the_leader_and_the_quiet_ones() {
        let mut view = ClusterView {
            replica: "a".into(),
            leader: Some("b".into()),
            leader_since: Some(0),
            term: 7,
            lease_age_ms: Some(300),
            replicas: vec![replica("a", true), replica("b", true)],
            error: None,
        };
        let checks = replica_checks(&view);
        assert_eq!(checks[0].status, Status::Ok);
        assert!(checks[0].detail.starts_with("b leads (term 7"), "{}", checks[0].detail);
        assert_eq!(checks[1].status, Status::Ok);

        view.leader = None;
        view.lease_age_ms = None;
        view.replicas.push(replica("c", false));
        let checks = replica_checks(&view);
        assert_eq!(checks[0].status, Status::Warn);
        assert_eq!(checks[1].status, Status::Warn);
        assert!(checks[1].detail.contains("c (http://c:8080, not heard from for 42 s)"), "{}", checks[1].detail);

        view.error = Some("connection refused".into());
        assert_eq!(replica_checks(&view)[0].status, Status::Fail);
    }
}
