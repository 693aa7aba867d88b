//! Runs each Rollout of the applied revision: keeps its state (persisted after every change),
//! feeds it the canary's telemetry every analysis interval, takes operators' actions, and
//! publishes the configuration with every rollout's weights laid over what git says.
//!
//! The decisions are `trellis_model::rollout`'s; this module only gathers their inputs and
//! carries out their results. One async lock serialises ticks and actions, and a state is
//! saved before it takes effect, so what proxies run never gets ahead of the database.

pub mod history;

use crate::store::Fence;
use std::collections::BTreeMap;
use trellis_api::{RolloutView, RolloutsView};
use trellis_model::config::{MeshConfig, RolloutConfig, RolloutOutcome};
use trellis_model::rollout::{self, Action, Event, Phase, Placement, RolloutState, Sample};

/// How often rollouts are looked at; analyses run at their own interval.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// What the rollout runner needs of the control plane around it.
pub trait Env: Clone + Send + Sync + 'static {
    fn store(&self) -> &crate::store::Store;
    fn audit(&self) -> &crate::audit::Audit;
    fn fleet(&self) -> &crate::fleet::Fleet;
    fn telemetry(&self) -> &crate::telemetry::Telemetry;
    fn rollouts(&self) -> &Rollouts;
    /// Where outcomes are committed.
    fn policy(&self) -> &crate::gitops::PolicySource;
    fn record_to(&self) -> crate::gitops::outcome::RecordTo;
    /// Something the dashboard shows changed.
    fn changed(&self);
    /// The leader's fence while this replica leads; `None` on the others, which only follow.
    fn fence(&self) -> Option<Fence>;
}

#[derive(Default)]
pub struct Rollouts(tokio::sync::Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// The applied revision as compiled from git, before any rollout's overlay.
    base: Option<MeshConfig>,
    states: BTreeMap<String, RolloutState>,
    /// The placements last published, to push only when one moves.
    published: Vec<(String, Placement)>,
    /// When recording each ended rollout in git was last tried (unix ms).
    record_attempts: BTreeMap<String, u64>,
}

impl Inner {
    /// Sets aside states made for a spec other than the base's (the leader has not caught up
    /// with this revision, or this replica with the leader's).
    fn keep_matching(&mut self) {
        let Some(base) = &self.base else { return };
        self.states.retain(|n, s| base.rollouts.get(n).is_some_and(|spec| s.fingerprint == rollout::fingerprint(spec)));
    }
}

/// The leader's part of a new base: starts rollouts that appeared or changed and forgets
/// those that went away. `restoring`: the states come from the database, saved by a
/// control plane that is gone; each running one waits for a fresh analysis.
async fn reconcile(app: &impl Env, inner: &mut Inner, fence: &Fence, restoring: bool) {
    let now = crate::now_ms() as u64;
    let Some(config) = inner.base.clone() else { return };
    let live: BTreeMap<String, RolloutConfig> =
        config.rollouts.iter().filter(|(_, r)| r.status.is_none()).map(|(n, r)| (n.clone(), r.clone())).collect();
    let gone: Vec<String> = inner
        .states
        .iter()
        .filter(|(n, s)| config.rollouts.get(*n).is_none_or(|spec| s.fingerprint != rollout::fingerprint(spec)))
        .map(|(n, _)| n.clone())
        .filter(|n| !live.contains_key(n))
        .collect();
    for name in gone {
        inner.states.remove(&name);
        if let Err(e) = app.store().forget_rollout(&name, fence).await {
            tracing::error!(rollout = %name, error = %e, "cannot forget a finished rollout's state");
        }
    }
    for (name, spec) in &live {
        match inner.states.get_mut(name) {
            // Removing the recorded `status:` from an ended rollout runs it again.
            Some(state)
                if state.fingerprint == rollout::fingerprint(spec)
                    && !(state.phase.is_terminal() && state.recorded.is_some()) =>
            {
                if restoring {
                    rollout::restored(spec, state, now);
                }
            }
            existing => {
                let changed = existing.is_some();
                let (state, events) = rollout::start(spec, now);
                if let Err(e) = app.store().save_rollout(&state, now as i64, fence).await {
                    tracing::error!(rollout = %name, error = %e, "cannot save a new rollout; it starts when the database is back");
                    continue;
                }
                if changed {
                    let summary = format!("rollout {name} starts again: its spec or status changed in git");
                    app.audit().system("rollout.restarted", Some(&spec.service), summary, serde_json::json!({}));
                }
                record(app, spec, "trellis", &events);
                inner.states.insert(name.clone(), state);
                saved(app);
            }
        }
    }
}

/// Tells the other replicas that a rollout's state changed.
fn saved(app: &impl Env) {
    let store = app.store().clone();
    tokio::spawn(async move {
        if let Err(e) = store.notify(crate::store::topic::ROLLOUTS).await {
            tracing::debug!(error = %e, "cannot notify the other replicas; they catch up within a second");
        }
    });
}

/// How long to wait before trying again to commit an outcome git refused.
const RECORD_RETRY_MS: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("no rollout named {0:?} in the applied revision")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] rollout::Refused),
    #[error("the rollout state could not be saved: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("no replica of the control plane leads right now (a new leader takes over within 5 s); try again")]
    NoLeader,
}

impl Rollouts {
    /// Takes the states saved before a restart. Nothing moved while the control plane was
    /// down; each running rollout waits for a fresh analysis before its next step.
    pub async fn restore(&self, saved: Vec<RolloutState>) {
        let mut inner = self.0.lock().await;
        inner.states = saved.into_iter().map(|s| (s.name.clone(), s)).collect();
    }

    /// A new revision from git. The leader starts rollouts that appeared or changed and
    /// drops the state of those that went away (an ended rollout keeps its state, for its
    /// history); other replicas set aside states made for another spec and wait for the
    /// leader's. Either way, the overlaid configuration is published.
    pub async fn set_base(&self, app: &impl Env, config: MeshConfig) {
        let mut inner = self.0.lock().await;
        let restoring = inner.base.is_none();
        inner.base = Some(config);
        match app.fence() {
            Some(fence) => reconcile(app, &mut inner, &fence, restoring).await,
            None => inner.keep_matching(),
        }
        publish(app, &mut inner, true);
    }

    /// This replica became the leader: it takes the states as the database has them (the
    /// last leader's), starts what the last one had not, and runs on from there. Each running
    /// rollout waits one analysis interval of fresh traffic before its next step.
    pub async fn take_over(&self, app: &impl Env, saved: Vec<RolloutState>) {
        let Some(fence) = app.fence() else { return };
        let mut inner = self.0.lock().await;
        inner.states = saved.into_iter().map(|s| (s.name.clone(), s)).collect();
        reconcile(app, &mut inner, &fence, true).await;
        publish(app, &mut inner, false);
        app.changed();
    }

    /// Another replica leads: takes the states it saved. Returns whether any changed.
    pub async fn follow(&self, app: &impl Env, saved: Vec<RolloutState>) -> bool {
        if app.fence().is_some() {
            return false;
        }
        let mut inner = self.0.lock().await;
        let saved: BTreeMap<String, RolloutState> = saved.into_iter().map(|s| (s.name.clone(), s)).collect();
        let before = std::mem::replace(&mut inner.states, saved);
        inner.keep_matching();
        // Compared once set aside: a state kept for another spec is no change each second.
        if inner.states == before {
            return false;
        }
        publish(app, &mut inner, false);
        app.changed();
        true
    }

    /// Analyses what is due and moves what the analyses allow.
    pub async fn tick(&self, app: &impl Env) {
        let Some(fence) = app.fence() else { return };
        let now = crate::now_ms() as u64;
        let mut inner = self.0.lock().await;
        let Some(base) = &inner.base else { return };
        let specs = base.rollouts.clone();
        let mut changed = false;
        for (name, spec) in specs.iter().filter(|(_, s)| s.status.is_none()) {
            let Some(state) = inner.states.get(name) else { continue };
            let window = rollout::analysis_due(state, now).then(|| {
                let settled = crate::telemetry::settled(now / 1000);
                rollout::analysis_window(state, settled, spec.analysis.interval_ms / 1000)
            });
            let sample = window.map(|w| canary_sample(app, spec, w));
            let mut next = state.clone();
            let events = rollout::tick(spec, &mut next, now, sample.as_ref());
            if let Some((_, until)) = window {
                next.analysed_to_s = until;
            }
            if events.is_empty() {
                continue;
            }
            if let Err(e) = app.store().save_rollout(&next, now as i64, &fence).await {
                // Not saved, not applied: the same analysis runs again on the next tick.
                tracing::error!(rollout = %name, error = %e, "cannot save rollout state; holding it where it is");
                continue;
            }
            saved(app);
            record(app, spec, "trellis", &events);
            inner.states.insert(name.clone(), next);
            changed = true;
        }
        if changed {
            publish(app, &mut inner, false);
            // New analyses show on the Rollouts page even when no weight moved.
            app.changed();
        }
    }

    /// An operator's action, saved and in force before this returns.
    pub async fn act(&self, app: &impl Env, name: &str, action: Action, actor: &str) -> Result<RolloutView, ActError> {
        let now = crate::now_ms() as u64;
        let mut inner = self.0.lock().await;
        let spec = inner.base.as_ref().and_then(|b| b.rollouts.get(name)).cloned();
        if let Some(outcome) = spec.as_ref().and_then(|s| s.status) {
            let phase = if outcome == RolloutOutcome::Completed { "completed" } else { "aborted" };
            return Err(rollout::Refused { action: action.name(), name: name.to_string(), phase }.into());
        }
        let (Some(spec), Some(state)) = (spec, inner.states.get(name)) else {
            return Err(ActError::NotFound(name.to_string()));
        };
        let mut next = state.clone();
        let events = rollout::act(&spec, &mut next, action, actor, now)?;
        let fence = app.fence().ok_or(ActError::NoLeader)?;
        app.store().save_rollout(&next, now as i64, &fence).await.map_err(|e| match e {
            crate::store::StoreError::Fenced => ActError::NoLeader,
            e => e.into(),
        })?;
        saved(app);
        let summary = format!("{actor} chose {} on rollout {name}", action.name());
        app.audit().record(crate::store::NewEvent {
            at: now as i64,
            kind: format!("rollout.action.{}", action.name()),
            actor: actor.to_string(),
            revision: inner.base.as_ref().map(|b| b.revision.clone()),
            service: Some(spec.service.clone()),
            summary,
            detail: serde_json::json!({ "rollout": name, "action": action.name() }),
        });
        record(app, &spec, actor, &events);
        let ended = next.phase.is_terminal();
        inner.states.insert(name.to_string(), next);
        publish(app, &mut inner, false);
        let view = view(&spec, inner.states.get(name));
        drop(inner);
        if ended {
            let app = app.clone();
            tokio::spawn(async move { app.rollouts().record_outcomes(&app).await });
        }
        Ok(view)
    }

    /// Commits the outcome of every ended rollout that git does not know yet (retrying a
    /// refused commit every half minute). Once the commit is on the watched branch, the next
    /// revision carries the outcome: git and the applied configuration agree.
    pub async fn record_outcomes(&self, app: &impl Env) {
        if app.fence().is_none() {
            return;
        }
        let now = crate::now_ms() as u64;
        let todo: Vec<(RolloutConfig, RolloutOutcome, String)> = {
            let mut inner = self.0.lock().await;
            let Some(base) = &inner.base else { return };
            let mut todo = Vec::new();
            for (name, spec) in base.rollouts.iter().filter(|(_, s)| s.status.is_none()) {
                let Some(state) = inner.states.get(name).filter(|s| s.recorded.is_none()) else { continue };
                let (outcome, by) = match &state.phase {
                    Phase::Completed { by } => (RolloutOutcome::Completed, by.clone()),
                    Phase::Aborted { by, .. } => (RolloutOutcome::Aborted, by.clone()),
                    _ => continue,
                };
                if inner.record_attempts.get(name).is_some_and(|t| now < t + RECORD_RETRY_MS) {
                    continue;
                }
                todo.push((spec.clone(), outcome, by));
            }
            for (spec, _, _) in &todo {
                inner.record_attempts.insert(spec.name.clone(), now);
            }
            todo
        };
        for (spec, outcome, by) in todo {
            let why = view(&spec, self.0.lock().await.states.get(&spec.name)).reason.unwrap_or_default();
            let name = &spec.name;
            match crate::gitops::outcome::record(app.policy(), app.record_to(), name, outcome, &by, &why).await {
                Ok(recorded) => {
                    let mut inner = self.0.lock().await;
                    if let (Some(state), Some(fence)) = (inner.states.get_mut(name), app.fence()) {
                        state.recorded = Some(recorded.sha.clone());
                        match app.store().save_rollout(state, now as i64, &fence).await {
                            Ok(()) => saved(app),
                            Err(e) => {
                                tracing::error!(rollout = %name, error = %e, "cannot save that the outcome was recorded")
                            }
                        }
                    }
                    app.audit().record(crate::store::NewEvent {
                        at: crate::now_ms(),
                        kind: "rollout.recorded".into(),
                        actor: by.clone(),
                        revision: Some(recorded.sha.clone()),
                        service: Some(spec.service.clone()),
                        summary: format!(
                            "rollout {name} outcome committed to {} as {}",
                            recorded.branch,
                            crate::audit::short(&recorded.sha)
                        ),
                        detail: serde_json::json!({ "rollout": name, "branch": recorded.branch, "commit": recorded.sha }),
                    });
                    app.changed();
                }
                Err(e) => {
                    tracing::warn!(rollout = %name, error = %e, "cannot commit the rollout's outcome; retrying later");
                    let summary = format!("rollout {name}: committing its outcome to git failed: {e}");
                    app.audit().system("rollout.record_failed", Some(&spec.service), summary, serde_json::json!({}));
                }
            }
        }
    }

    /// The applied revision as git has it, without overlays: what the next revision is
    /// compared with.
    pub async fn base(&self) -> Option<MeshConfig> {
        self.0.lock().await.base.clone()
    }

    pub async fn views(&self) -> RolloutsView {
        let inner = self.0.lock().await;
        let Some(base) = &inner.base else { return RolloutsView::default() };
        RolloutsView {
            items: base.rollouts.values().map(|spec| view(spec, inner.states.get(&spec.name))).collect(),
            ..Default::default()
        }
    }
}

/// The canary's traffic over the seconds `(after, until]`, as its callers' proxies saw it:
/// connection failures to a broken canary count against it, which its own proxy could not
/// report.
fn canary_sample(app: &impl Env, spec: &RolloutConfig, (after, until): (u64, u64)) -> Sample {
    let window_s = until - after;
    let mut counts = crate::telemetry::Counts::default();
    for (key, c) in app.telemetry().window(until, window_s) {
        if key.caller.is_some() && key.service == spec.service && key.version == spec.canary {
            counts.merge(&c);
        }
    }
    let golden = counts.golden(window_s);
    Sample { requests: counts.requests, failures: counts.failures, p99_ms: golden.p99_ms }
}

/// Lays every rollout's placement over the base and pushes it when anything moved (or the
/// base itself changed).
fn publish(app: &impl Env, inner: &mut Inner, base_changed: bool) {
    let Some(base) = &inner.base else { return };
    let placements: Vec<(String, Placement)> = base
        .rollouts
        .values()
        .map(|spec| (spec.name.clone(), Placement::of(spec, inner.states.get(&spec.name))))
        .collect();
    if !base_changed && placements == inner.published {
        return;
    }
    let mut config = base.clone();
    rollout::overlay(&mut config, &placements);
    inner.published = placements;
    app.fleet().set_mesh(config);
    app.changed();
}

/// Audits what happened, analyses with their numbers included.
fn record(app: &impl Env, spec: &RolloutConfig, actor: &str, events: &[Event]) {
    for event in events {
        let actor = if matches!(event, Event::Analysed(_)) { "trellis" } else { actor };
        app.audit().record(crate::store::NewEvent {
            at: crate::now_ms(),
            kind: event.kind().to_string(),
            actor: actor.to_string(),
            revision: None,
            service: Some(spec.service.clone()),
            summary: event.describe(spec),
            detail: {
                // Named, so a rollout's history can be read back from the log.
                let mut detail = serde_json::to_value(event).unwrap_or_default();
                detail["rollout"] = spec.name.clone().into();
                detail
            },
        });
    }
}

fn view(spec: &RolloutConfig, state: Option<&RolloutState>) -> RolloutView {
    let placement = Placement::of(spec, state);
    let recorded = spec.status.map(|s| serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)));
    let (phase, reason) = match (recorded.clone().flatten(), state.map(|s| &s.phase)) {
        (Some(outcome), Some(Phase::Aborted { reason, .. })) => (outcome, Some(format!("{reason} (recorded in git)"))),
        (Some(outcome), Some(Phase::Completed { by })) => {
            (outcome, Some(format!("completed by {by} (recorded in git)")))
        }
        // Ended in git before this control plane ran it (the reference policy's catalog-v2):
        // nothing here to show but where the outcome comes from, and how to run it again.
        (Some(outcome), _) => (
            outcome.clone(),
            Some(format!(
                "{outcome} before this control plane ran it: the rollout's file in git says `status: {outcome}`; \
                 delete that line to run it again"
            )),
        ),
        (None, None) => ("pending".to_string(), None),
        (None, Some(p)) => (
            p.name().to_string(),
            match p {
                Phase::Paused { reason } | Phase::Aborted { reason, .. } => Some(reason.clone()),
                Phase::Completed { by } => Some(format!("completed by {by}")),
                _ => None,
            },
        ),
    };
    // An outcome recorded in git ends the rollout, whatever its saved state says.
    let recorded_in_git = spec.status.is_some();
    let actions = match state {
        Some(state) if !recorded_in_git => state.phase.actions(),
        _ => vec![],
    };
    let a = &spec.analysis;
    RolloutView {
        name: spec.name.clone(),
        service: spec.service.clone(),
        stable: spec.stable.clone(),
        canary: spec.canary.clone(),
        strategy: serde_json::to_value(spec.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        phase,
        reason,
        step: state.map_or(0, |s| s.step),
        steps: spec.steps.iter().map(|s| s.weight).collect(),
        canary_weight: placement.weight,
        header_routed: placement.header_routed,
        failures: state.map_or(0, |s| s.failures),
        max_failures: a.max_failures,
        inconclusive: state.map_or(0, |s| s.inconclusive),
        max_inconclusive: a.max_inconclusive,
        interval_ms: a.interval_ms,
        min_success_rate: a.min_success_rate,
        max_p99_ms: a.max_p99_ms,
        min_requests: a.min_requests,
        analyses: state.map(|s| s.analyses.clone()).unwrap_or_default(),
        actions: actions.into_iter().map(|a| a.name().to_string()).collect(),
        recorded: recorded.flatten(),
    }
}
