//! Canary rollouts as a pure state machine, and the traffic overlay a rollout puts on the
//! compiled configuration.
//!
//! The control plane owns the clock, the telemetry and the database; this module only decides.
//! Each step sets the canary's weight and then waits: for its pause (while analyses keep
//! passing) or for an operator at a manual gate. Every analysis interval the canary's own
//! traffic is judged: a pass, a fail (counted; enough of them abort) or inconclusive when too few
//! requests arrived to judge — never a pass by default. Enough inconclusive intervals in a row
//! pause the rollout with the reason, rather than stalling silently.

use crate::config::{
    Backend, HeaderConfig, MatchConfig, MeshConfig, RolloutConfig, RolloutOutcome, RolloutStrategy, RuleConfig,
};
use serde::{Deserialize, Serialize};

/// Analyses kept per rollout for the dashboard's chart; older ones are dropped.
pub const HISTORY: usize = 240;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Waiting out the current step's pause while analysing.
    Progressing,
    /// At a manual gate: analyses continue, an operator promotes.
    AwaitingPromotion,
    /// Stopped where it is, weights held; `reason` says why and who.
    Paused { reason: String },
    /// All traffic on the canary.
    Completed { by: String },
    /// All traffic back on stable; `reason` names the metric and value, or the operator.
    Aborted { reason: String, by: String },
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Completed { .. } | Phase::Aborted { .. })
    }

    /// Whether an operator may take `action` now: nothing once the rollout ended, no pause
    /// of a paused one, no resume of one that is not. [`act`] refuses the rest; the dashboard
    /// offers exactly these.
    pub fn allows(&self, action: Action) -> bool {
        match self {
            Phase::Completed { .. } | Phase::Aborted { .. } => false,
            Phase::Paused { .. } => action != Action::Pause,
            Phase::Progressing | Phase::AwaitingPromotion => action != Action::Resume,
        }
    }

    /// The actions [`Phase::allows`], in the order the dashboard shows them.
    pub fn actions(&self) -> Vec<Action> {
        Action::ALL.into_iter().filter(|a| self.allows(*a)).collect()
    }

    pub fn name(&self) -> &'static str {
        match self {
            Phase::Progressing => "progressing",
            Phase::AwaitingPromotion => "awaiting-promotion",
            Phase::Paused { .. } => "paused",
            Phase::Completed { .. } => "completed",
            Phase::Aborted { .. } => "aborted",
        }
    }
}

/// A running rollout, persisted by the control plane after every change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub name: String,
    /// Of the spec this state runs; a changed spec in git starts the rollout afresh.
    pub fingerprint: String,
    pub phase: Phase,
    /// Index into the spec's steps.
    pub step: usize,
    pub step_started_ms: u64,
    pub next_analysis_ms: u64,
    /// Whether an analysis has passed since the step began; a step never advances on
    /// inconclusive or missing data.
    pub passed_in_step: bool,
    /// Failed analyses since the rollout began.
    pub failures: u32,
    /// Inconclusive analyses in a row.
    pub inconclusive: u32,
    /// Newest last, at most [`HISTORY`].
    pub analyses: Vec<Analysis>,
    /// Once ended: the commit that recorded the outcome in git (see [`record_outcome`]).
    #[serde(default)]
    pub recorded: Option<String>,
    /// The last second (unix) the previous analysis covered; 0 before the first. The next
    /// analysis starts after it (see [`analysis_window`]).
    #[serde(default)]
    pub analysed_to_s: u64,
}

/// The canary's traffic over one analysis interval, as the control plane aggregated it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub requests: u64,
    pub failures: u64,
    pub p99_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// One interval's judgement, with the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Analysis {
    pub at_ms: u64,
    pub step: usize,
    pub weight: u32,
    pub requests: u64,
    /// Percent.
    pub success_rate: Option<f64>,
    pub p99_ms: Option<f64>,
    pub verdict: Verdict,
    /// For a fail or inconclusive verdict: which metric, its value and the threshold.
    pub detail: Option<String>,
}

/// What an operator can do to a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Pass the current gate or pause: go to the next step.
    Promote,
    /// Skip every remaining step: all traffic to the canary now.
    PromoteFull,
    Pause,
    Resume,
    /// All traffic back to stable now.
    Abort,
}

impl Action {
    pub const ALL: [Action; 5] = [Action::Promote, Action::PromoteFull, Action::Pause, Action::Resume, Action::Abort];

    pub fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::PromoteFull => "promote-full",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Abort => "abort",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// Something that happened to a rollout, for the audit log and the dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Started { weight: u32 },
    Analysed(Analysis),
    Stepped { step: usize, weight: u32 },
    AwaitingPromotion { step: usize, weight: u32 },
    Paused { reason: String },
    Resumed,
    Completed,
    Aborted { reason: String },
}

impl Event {
    /// A sentence for the audit log.
    pub fn describe(&self, spec: &RolloutConfig) -> String {
        let name = &spec.name;
        match self {
            Event::Started { weight } => format!("rollout {name} started: {}% to {}", weight, spec.canary),
            Event::Analysed(a) => {
                let numbers = format!(
                    "{} requests, success {}, p99 {}",
                    a.requests,
                    a.success_rate.map_or("-".into(), |s| format!("{s:.2}%")),
                    a.p99_ms.map_or("-".into(), |p| format!("{p:.0} ms"))
                );
                match &a.detail {
                    Some(d) => format!("rollout {name} analysis {}: {d} ({numbers})", verdict_word(&a.verdict)),
                    None => format!("rollout {name} analysis passed at {}% ({numbers})", a.weight),
                }
            }
            Event::Stepped { step, weight } => {
                format!("rollout {name} step {} of {}: {weight}% to {}", step + 1, spec.steps.len(), spec.canary)
            }
            Event::AwaitingPromotion { step, weight } => format!(
                "rollout {name} waits for promotion at step {} of {} ({weight}% to {})",
                step + 1,
                spec.steps.len(),
                spec.canary
            ),
            Event::Paused { reason } => format!("rollout {name} paused: {reason}"),
            Event::Resumed => format!("rollout {name} resumed"),
            Event::Completed => format!("rollout {name} completed: all traffic to {}", spec.canary),
            Event::Aborted { reason } => format!("rollout {name} aborted: {reason}; all traffic to {}", spec.stable),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "rollout.started",
            Event::Analysed(_) => "rollout.analysed",
            Event::Stepped { .. } => "rollout.stepped",
            Event::AwaitingPromotion { .. } => "rollout.awaiting_promotion",
            Event::Paused { .. } => "rollout.paused",
            Event::Resumed => "rollout.resumed",
            Event::Completed => "rollout.completed",
            Event::Aborted { .. } => "rollout.aborted",
        }
    }
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass => "passed",
        Verdict::Fail => "failed",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Why an operator's action was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} rollout {name}: it is {phase}")]
pub struct Refused {
    pub action: &'static str,
    pub name: String,
    pub phase: &'static str,
}

/// A stable fingerprint of a rollout's spec (FNV-1a over its JSON, outcome left out), so a
/// restarted control plane recognises the rollout it was running.
pub fn fingerprint(spec: &RolloutConfig) -> String {
    let mut unfinished = spec.clone();
    unfinished.status = None;
    let json = serde_json::to_vec(&unfinished).unwrap_or_default();
    let hash = json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// A rollout found in git without a state: its first step begins now.
pub fn start(spec: &RolloutConfig, now_ms: u64) -> (RolloutState, Vec<Event>) {
    let mut state = RolloutState {
        name: spec.name.clone(),
        fingerprint: fingerprint(spec),
        phase: Phase::Progressing,
        step: 0,
        step_started_ms: now_ms,
        next_analysis_ms: now_ms + spec.analysis.interval_ms,
        passed_in_step: false,
        failures: 0,
        inconclusive: 0,
        analyses: Vec::new(),
        recorded: None,
        analysed_to_s: 0,
    };
    let mut events = Vec::new();
    enter_step(spec, &mut state, 0, now_ms, &mut events);
    if matches!(events[..], [Event::Stepped { .. }]) {
        events.clear();
    }
    events.insert(0, Event::Started { weight: canary_weight(spec, &state) });
    (state, events)
}

/// After a control-plane restart: nothing moved while it was down, and the next step waits for
/// a fresh passing analysis rather than trusting one from before the outage.
pub fn restored(spec: &RolloutConfig, state: &mut RolloutState, now_ms: u64) {
    state.passed_in_step = false;
    state.next_analysis_ms = now_ms + spec.analysis.interval_ms;
}

/// Whether `tick` at `now_ms` would analyse, so the caller knows to gather a sample.
pub fn analysis_due(state: &RolloutState, now_ms: u64) -> bool {
    matches!(state.phase, Phase::Progressing | Phase::AwaitingPromotion) && now_ms >= state.next_analysis_ms
}

/// The seconds an analysis due now covers, `(after, until]`: up to `settled_s` (the newest
/// complete second) and from where the previous analysis ended, so that consecutive analyses
/// tile time and each request is judged exactly once, whatever the jitter of the ticks that
/// run them. The first analysis, one after a long gap (a failover), or one with nothing new
/// covers the last `interval_s` seconds instead.
pub fn analysis_window(state: &RolloutState, settled_s: u64, interval_s: u64) -> (u64, u64) {
    let interval_s = interval_s.max(1);
    let previous = state.analysed_to_s;
    let after = if previous > 0 && previous < settled_s && settled_s - previous <= 2 * interval_s {
        previous
    } else {
        settled_s.saturating_sub(interval_s)
    };
    (after, settled_s)
}

/// Judges one interval of the canary's traffic against the thresholds.
pub fn judge(spec: &RolloutConfig, sample: &Sample) -> (Verdict, Option<String>) {
    let a = &spec.analysis;
    if sample.requests < u64::from(a.min_requests) {
        let why = format!("{} requests, fewer than minRequests {}", sample.requests, a.min_requests);
        return (Verdict::Inconclusive, Some(why));
    }
    let success = success_rate(sample).unwrap_or(0.0);
    if success < a.min_success_rate {
        let why = format!("success rate {success:.2}% is below {}%", a.min_success_rate);
        return (Verdict::Fail, Some(why));
    }
    match sample.p99_ms {
        Some(p99) if p99 > a.max_p99_ms as f64 => {
            (Verdict::Fail, Some(format!("p99 latency {p99:.0} ms is above {} ms", a.max_p99_ms)))
        }
        _ => (Verdict::Pass, None),
    }
}

fn success_rate(sample: &Sample) -> Option<f64> {
    (sample.requests > 0)
        .then(|| (sample.requests - sample.failures.min(sample.requests)) as f64 * 100.0 / sample.requests as f64)
}

/// Advances the clock: analyses when due (`sample` must then be given), aborts or pauses on
/// the verdicts, and moves to the next step when the current one's pause has passed.
pub fn tick(spec: &RolloutConfig, state: &mut RolloutState, now_ms: u64, sample: Option<&Sample>) -> Vec<Event> {
    let mut events = Vec::new();
    if analysis_due(state, now_ms) {
        let sample = sample.cloned().unwrap_or_default();
        let (verdict, detail) = judge(spec, &sample);
        let analysis = Analysis {
            at_ms: now_ms,
            step: state.step,
            weight: canary_weight(spec, state),
            requests: sample.requests,
            success_rate: success_rate(&sample),
            p99_ms: sample.p99_ms,
            verdict: verdict.clone(),
            detail: detail.clone(),
        };
        state.analyses.push(analysis.clone());
        if state.analyses.len() > HISTORY {
            state.analyses.remove(0);
        }
        state.next_analysis_ms = now_ms + spec.analysis.interval_ms;
        events.push(Event::Analysed(analysis));
        let detail = detail.unwrap_or_default();
        match verdict {
            Verdict::Pass => {
                state.inconclusive = 0;
                state.passed_in_step = true;
            }
            Verdict::Fail => {
                state.inconclusive = 0;
                state.failures += 1;
                if state.failures >= spec.analysis.max_failures {
                    let reason =
                        format!("{detail} (failed analysis {} of {})", state.failures, spec.analysis.max_failures);
                    abort(state, reason, "trellis", &mut events);
                    return events;
                }
            }
            Verdict::Inconclusive => {
                state.inconclusive += 1;
                if state.inconclusive >= spec.analysis.max_inconclusive && state.phase == Phase::Progressing {
                    let reason = format!(
                        "{} inconclusive analyses in a row: {detail}; send the canary traffic or promote by hand",
                        state.inconclusive
                    );
                    pause(state, reason, &mut events);
                    return events;
                }
            }
        }
    }
    if state.phase == Phase::Progressing && state.passed_in_step {
        let waited = now_ms.saturating_sub(state.step_started_ms);
        if waited >= spec.steps[state.step].pause_ms.unwrap_or(0) {
            next_step(spec, state, now_ms, &mut events);
        }
    }
    events
}

/// An operator's action. Refused (with the phase) when the rollout has already ended or the
/// action does not apply.
pub fn act(
    spec: &RolloutConfig,
    state: &mut RolloutState,
    action: Action,
    actor: &str,
    now_ms: u64,
) -> Result<Vec<Event>, Refused> {
    let refuse =
        |state: &RolloutState| Refused { action: action.name(), name: spec.name.clone(), phase: state.phase.name() };
    if !state.phase.allows(action) {
        return Err(refuse(state));
    }
    let mut events = Vec::new();
    match action {
        Action::Promote => next_step(spec, state, now_ms, &mut events),
        Action::PromoteFull => complete(state, actor, &mut events),
        Action::Pause => pause(state, format!("paused by {actor}"), &mut events),
        Action::Resume => {
            state.inconclusive = 0;
            state.step_started_ms = now_ms;
            state.next_analysis_ms = now_ms + spec.analysis.interval_ms;
            state.phase = gate_or_progress(spec, state.step);
            events.push(Event::Resumed);
        }
        Action::Abort => abort(state, format!("aborted by {actor}"), actor, &mut events),
    }
    Ok(events)
}

fn gate_or_progress(spec: &RolloutConfig, step: usize) -> Phase {
    if spec.steps[step].manual { Phase::AwaitingPromotion } else { Phase::Progressing }
}

fn next_step(spec: &RolloutConfig, state: &mut RolloutState, now_ms: u64, events: &mut Vec<Event>) {
    if state.step + 1 >= spec.steps.len() {
        complete(state, "trellis", events);
    } else {
        enter_step(spec, state, state.step + 1, now_ms, events);
    }
}

fn enter_step(spec: &RolloutConfig, state: &mut RolloutState, step: usize, now_ms: u64, events: &mut Vec<Event>) {
    state.step = step;
    state.step_started_ms = now_ms;
    state.passed_in_step = false;
    state.inconclusive = 0;
    state.phase = gate_or_progress(spec, step);
    let weight = canary_weight(spec, state);
    events.push(match state.phase {
        Phase::AwaitingPromotion => Event::AwaitingPromotion { step, weight },
        _ => Event::Stepped { step, weight },
    });
}

fn complete(state: &mut RolloutState, by: &str, events: &mut Vec<Event>) {
    state.phase = Phase::Completed { by: by.to_string() };
    events.push(Event::Completed);
}

fn pause(state: &mut RolloutState, reason: String, events: &mut Vec<Event>) {
    state.phase = Phase::Paused { reason: reason.clone() };
    events.push(Event::Paused { reason });
}

fn abort(state: &mut RolloutState, reason: String, by: &str, events: &mut Vec<Event>) {
    state.phase = Phase::Aborted { reason: reason.clone(), by: by.to_string() };
    events.push(Event::Aborted { reason });
}

/// The canary's share of the service's traffic, in percent.
pub fn canary_weight(spec: &RolloutConfig, state: &RolloutState) -> u32 {
    match &state.phase {
        Phase::Completed { .. } => 100,
        Phase::Aborted { .. } => 0,
        _ if spec.strategy == RolloutStrategy::BlueGreen => 0,
        _ => spec.steps[state.step].weight,
    }
}

/// Where a rollout has traffic now: from its running state, or from the outcome git records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub weight: u32,
    /// Whether requests carrying the rollout's header go to the canary.
    pub header_routed: bool,
}

impl Placement {
    pub fn of(spec: &RolloutConfig, state: Option<&RolloutState>) -> Placement {
        let weight = match (spec.status, state) {
            (Some(RolloutOutcome::Completed), _) => 100,
            (Some(RolloutOutcome::Aborted), _) => 0,
            (None, Some(state)) => canary_weight(spec, state),
            // Not started yet: the canary gets nothing until the control plane starts it.
            (None, None) => 0,
        };
        let live = spec.status.is_none() && state.is_some_and(|s| !s.phase.is_terminal());
        let header_routed = live && spec.strategy != RolloutStrategy::Canary && spec.header.is_some();
        Placement { weight, header_routed }
    }
}

/// Puts each rollout's placement on its service's rules. A rule that splits traffic between
/// the stable and canary versions gets their combined share re-divided by the rollout's
/// weight; other versions keep theirs. A rule that names a single version (a pinned test
/// route) is left alone. With header routing, each rule is preceded by a copy that
/// sends requests carrying the header to the canary.
pub fn overlay(config: &mut MeshConfig, placements: &[(String, Placement)]) {
    for (name, placement) in placements {
        let Some(spec) = config.rollouts.get(name).cloned() else { continue };
        let Some(service) = config.services.get_mut(&spec.service) else { continue };
        let mut rules = Vec::with_capacity(service.rules.len() * 2);
        for rule in service.rules.drain(..) {
            let pinned = rule.backends.len() == 1;
            let ours = |b: &Backend| b.version == spec.stable || b.version == spec.canary;
            if pinned || !rule.backends.iter().any(ours) {
                rules.push(rule);
                continue;
            }
            if placement.header_routed
                && let Some(header) = &spec.header
            {
                rules.push(header_rule(&rule, header, &spec.canary));
            }
            rules.push(reweighted(rule, &spec, placement.weight));
        }
        service.rules = rules;
    }
}

fn reweighted(mut rule: RuleConfig, spec: &RolloutConfig, weight: u32) -> RuleConfig {
    let share: u32 =
        rule.backends.iter().filter(|b| b.version == spec.stable || b.version == spec.canary).map(|b| b.weight).sum();
    let canary = (u64::from(share) * u64::from(weight) / 100) as u32;
    rule.backends.retain(|b| b.version != spec.stable && b.version != spec.canary);
    rule.backends.insert(0, Backend { version: spec.stable.clone(), weight: share - canary });
    rule.backends.insert(1, Backend { version: spec.canary.clone(), weight: canary });
    rule
}

fn header_rule(rule: &RuleConfig, header: &HeaderConfig, canary: &str) -> RuleConfig {
    let mut copy = rule.clone();
    copy.backends = vec![Backend { version: canary.to_string(), weight: 100 }];
    copy.mirror = None;
    if copy.matches.is_empty() {
        copy.matches.push(MatchConfig::default());
    }
    for m in &mut copy.matches {
        m.headers.push(header.clone());
    }
    copy
}

mod record;
pub use record::record_outcome;

#[cfg(test)]
mod tests;
