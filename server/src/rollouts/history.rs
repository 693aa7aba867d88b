//! Finished rollouts, read back from the audit log: each run's outcome, who ended it and who
//! acted on it, the canary's weight over time, and the commit that recorded it in git. The
//! log already holds all of it, append-only: no second record to keep in step.

use trellis_api::{AuditEntry, RolloutRun};

/// The runs that ended among `events` (any order), newest first.
pub fn runs(events: &[AuditEntry]) -> Vec<RolloutRun> {
    let mut events: Vec<&AuditEntry> = events.iter().filter(|e| e.kind.starts_with("rollout.")).collect();
    events.sort_by_key(|e| (e.at, e.id));
    let mut open: std::collections::BTreeMap<String, RolloutRun> = Default::default();
    let mut ended: Vec<RolloutRun> = Vec::new();
    for e in events {
        let name = rollout_of(e);
        let weight = e.detail["weight"].as_u64().map(|w| w as u32);
        let run = || RolloutRun { name: name.clone(), service: e.service.clone(), ..Default::default() };
        match e.kind.as_str() {
            "rollout.started" => {
                let mut fresh = run();
                fresh.started_at = Some(e.at);
                fresh.weights.extend(weight.map(|w| (e.at, w)));
                open.insert(name.clone(), fresh);
            }
            "rollout.stepped" | "rollout.awaiting_promotion" => {
                let current = open.entry(name.clone()).or_insert_with(run);
                if let Some(w) = weight
                    && current.weights.last().is_none_or(|(_, last)| *last != w)
                {
                    current.weights.push((e.at, w));
                }
            }
            "rollout.completed" | "rollout.aborted" => {
                let mut done = open.remove(&name).unwrap_or_else(run);
                done.outcome = e.kind["rollout.".len()..].to_string();
                done.ended_at = e.at;
                done.by = e.actor.clone();
                done.reason = e.detail["reason"].as_str().map(str::to_string);
                done.weights.push((e.at, if done.outcome == "completed" { 100 } else { 0 }));
                ended.push(done);
            }
            "rollout.recorded" => {
                if let Some(done) = ended.iter_mut().rev().find(|r| r.name == name && r.commit.is_none()) {
                    done.commit = e.detail["commit"].as_str().map(str::to_string).or_else(|| e.revision.clone());
                    done.branch = e.detail["branch"].as_str().map(str::to_string);
                }
            }
            kind if kind.starts_with("rollout.action.") => {
                let current = open.entry(name.clone()).or_insert_with(run);
                if !current.operators.contains(&e.actor) {
                    current.operators.push(e.actor.clone());
                }
            }
            _ => {}
        }
    }
    ended.reverse();
    ended
}

/// The rollout an event is about: named in its detail, or (events from before it was) the
/// second word of its summary, "rollout NAME …".
fn rollout_of(e: &AuditEntry) -> String {
    match e.detail["rollout"].as_str() {
        Some(name) => name.to_string(),
        None => e.summary.split_whitespace().nth(1).unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(at: i64, kind: &str, actor: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            id: at,
            at,
            kind: kind.into(),
            actor: actor.into(),
            revision: None,
            service: Some("inventory".into()),
            summary: format!("rollout inventory-v2 {kind}"),
            detail,
            hash: None,
        }
    }

    #[test]
    fn a_run_is_told_from_start_to_recorded_commit() {
        let log = vec![
            event(
                1,
                "rollout.started",
                "trellis",
                json!({ "event": "started", "weight": 10, "rollout": "inventory-v2" }),
            ),
            event(2, "rollout.analysed", "trellis", json!({ "weight": 10 })),
            event(3, "rollout.action.promote", "ann", json!({ "rollout": "inventory-v2", "action": "promote" })),
            event(3, "rollout.stepped", "ann", json!({ "event": "stepped", "step": 1, "weight": 60 })),
            event(4, "rollout.action.abort", "bob", json!({ "rollout": "inventory-v2", "action": "abort" })),
            event(4, "rollout.aborted", "bob", json!({ "event": "aborted", "reason": "aborted by bob" })),
            event(
                5,
                "rollout.recorded",
                "bob",
                json!({ "rollout": "inventory-v2", "commit": "abc", "branch": "main" }),
            ),
            // A second run, still going: not finished, not listed.
            event(6, "rollout.started", "trellis", json!({ "event": "started", "weight": 10 })),
        ];
        let runs = runs(&log);
        assert_eq!(runs.len(), 1, "{runs:?}");
        let run = &runs[0];
        assert_eq!((run.name.as_str(), run.outcome.as_str(), run.by.as_str()), ("inventory-v2", "aborted", "bob"));
        assert_eq!(run.reason.as_deref(), Some("aborted by bob"));
        assert_eq!(run.operators, ["ann", "bob"]);
        assert_eq!(run.weights, [(1, 10), (3, 60), (4, 0)]);
        assert_eq!((run.started_at, run.ended_at), (Some(1), 4));
        assert_eq!((run.commit.as_deref(), run.branch.as_deref()), (Some("abc"), Some("main")));
    }

    #[test]
    fn runs_come_newest_first_and_a_start_older_than_the_log_is_unknown() {
        let log = vec![
            event(20, "rollout.completed", "trellis", json!({ "event": "completed" })),
            event(10, "rollout.aborted", "trellis", json!({ "event": "aborted", "reason": "p99 above 500 ms" })),
            event(5, "rollout.started", "trellis", json!({ "event": "started", "weight": 50 })),
            event(15, "rollout.started", "trellis", json!({ "event": "started", "weight": 20 })),
        ];
        let runs = runs(&log);
        let told: Vec<(&str, Option<i64>)> = runs.iter().map(|r| (r.outcome.as_str(), r.started_at)).collect();
        assert_eq!(told, [("completed", Some(15)), ("aborted", Some(5))]);
        assert_eq!(runs[0].weights, [(15, 20), (20, 100)]);
        let orphan = super::runs(&[event(9, "rollout.completed", "ann", json!({}))]);
        assert_eq!((orphan[0].started_at, orphan[0].name.as_str()), (None, "inventory-v2"));
    }
}
