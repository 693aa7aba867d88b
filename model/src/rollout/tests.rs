use super::*;
use crate::config::{AnalysisConfig, HeaderValueMatch, ServiceConfig, StepConfig};

const S: u64 = 1_000;

/// 10 % for a minute, 50 % at a manual gate, then 100 %; analysis every 10 s.
fn spec() -> RolloutConfig {
    RolloutConfig {
        name: "shop-v2".into(),
        service: "shop".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        strategy: RolloutStrategy::Canary,
        header: Some(HeaderConfig { name: "x-canary".into(), value: HeaderValueMatch::Exact("1".into()) }),
        steps: vec![
            StepConfig { weight: 10, pause_ms: Some(60 * S), manual: false },
            StepConfig { weight: 50, pause_ms: None, manual: true },
            StepConfig { weight: 100, pause_ms: None, manual: false },
        ],
        analysis: AnalysisConfig {
            interval_ms: 10 * S,
            min_success_rate: 99.0,
            max_p99_ms: 500,
            min_requests: 20,
            max_failures: 2,
            max_inconclusive: 3,
        },
        status: None,
    }
}

fn healthy() -> Sample {
    Sample { requests: 100, failures: 0, p99_ms: Some(20.0) }
}

fn failing() -> Sample {
    Sample { requests: 100, failures: 10, p99_ms: Some(20.0) }
}

fn quiet() -> Sample {
    Sample { requests: 3, failures: 0, p99_ms: Some(20.0) }
}

/// Ticks every 10 s from `from` with the same sample; returns the time after the last tick.
fn run(spec: &RolloutConfig, state: &mut RolloutState, from: u64, ticks: u64, sample: &Sample) -> (u64, Vec<Event>) {
    let mut events = Vec::new();
    let mut now = from;
    for _ in 0..ticks {
        now += 10 * S;
        events.extend(tick(spec, state, now, Some(sample)));
    }
    (now, events)
}

#[test]
fn a_rollout_starts_at_its_first_weight() {
    let (state, events) = start(&spec(), 0);
    assert_eq!(events, vec![Event::Started { weight: 10 }]);
    assert_eq!((state.phase.clone(), canary_weight(&spec(), &state)), (Phase::Progressing, 10));

    let mut gated = spec();
    gated.steps[0].manual = true;
    gated.steps[0].pause_ms = None;
    let (state, events) = start(&gated, 0);
    assert_eq!(events, vec![Event::Started { weight: 10 }, Event::AwaitingPromotion { step: 0, weight: 10 }]);
    assert_eq!(state.phase, Phase::AwaitingPromotion);
}

#[test]
fn nothing_happens_before_an_analysis_is_due() {
    let (mut state, _) = start(&spec(), 0);
    assert!(!analysis_due(&state, 9 * S));
    assert!(tick(&spec(), &mut state, 9 * S, None).is_empty());
    assert!(analysis_due(&state, 10 * S));
}

#[test]
fn a_step_advances_once_its_pause_has_passed_and_analyses_pass() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    let (now, _) = run(&spec, &mut state, 0, 5, &healthy());
    assert_eq!((state.step, now), (0, 50 * S), "50 s into a 60 s pause: still step 1");
    let (_, events) = run(&spec, &mut state, now, 1, &healthy());
    assert_eq!(state.step, 1);
    assert!(events.contains(&Event::AwaitingPromotion { step: 1, weight: 50 }), "{events:?}");
    assert_eq!(state.phase, Phase::AwaitingPromotion);
}

#[test]
fn a_pause_that_passed_without_a_passing_analysis_does_not_advance() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    // A quiet interval, then none reported while the pause ran out: still no pass, so no step.
    run(&spec, &mut state, 0, 1, &quiet());
    assert!(tick(&spec, &mut state, 200 * S, None).iter().all(|e| matches!(e, Event::Analysed(_))));
    assert_eq!(state.step, 0);
    assert_eq!(state.analyses.last().unwrap().verdict, Verdict::Inconclusive, "no data is not a pass");
}

#[test]
fn inconclusive_intervals_neither_pass_nor_fail_and_enough_in_a_row_pause_with_the_reason() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    let (now, _) = run(&spec, &mut state, 0, 2, &quiet());
    assert_eq!((state.failures, state.inconclusive, state.phase.clone()), (0, 2, Phase::Progressing));
    // A pass in between resets the count: only inconclusive intervals in a row pause.
    let (now, _) = run(&spec, &mut state, now, 1, &healthy());
    let (_, events) = run(&spec, &mut state, now, 3, &quiet());
    let Phase::Paused { reason } = &state.phase else { panic!("expected a pause, got {:?}", state.phase) };
    assert!(
        reason.contains("3 inconclusive analyses in a row") && reason.contains("3 requests, fewer than minRequests 20"),
        "{reason}"
    );
    assert!(events.iter().any(|e| matches!(e, Event::Paused { .. })));
    assert_eq!(canary_weight(&spec, &state), 10, "a pause holds the weight");
    assert!(!analysis_due(&state, u64::MAX), "a paused rollout is not analysed");
}

#[test]
fn failed_analyses_abort_at_the_limit_naming_the_metric_and_value() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    let (now, _) = run(&spec, &mut state, 0, 1, &failing());
    assert_eq!((state.failures, state.phase.clone()), (1, Phase::Progressing));
    let (_, events) = run(&spec, &mut state, now, 1, &failing());
    let Phase::Aborted { reason, .. } = &state.phase else { panic!("expected an abort, got {:?}", state.phase) };
    assert!(reason.contains("success rate 90.00% is below 99%") && reason.contains("2 of 2"), "{reason}");
    assert_eq!(canary_weight(&spec, &state), 0, "all traffic back to stable");
    assert!(matches!(events.last(), Some(Event::Aborted { .. })));
}

#[test]
fn slow_canaries_fail_on_p99_and_gates_keep_analysing() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    act(&spec, &mut state, Action::Promote, "ann", 0).unwrap();
    assert_eq!(state.phase, Phase::AwaitingPromotion);
    let slow = Sample { requests: 100, failures: 0, p99_ms: Some(900.0) };
    run(&spec, &mut state, 0, 2, &slow);
    let Phase::Aborted { reason, .. } = &state.phase else { panic!("a failing canary aborts even at a gate") };
    assert!(reason.contains("p99 latency 900 ms is above 500 ms"), "{reason}");
}

#[test]
fn a_gate_waits_for_an_operator_however_long_analyses_pass() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    act(&spec, &mut state, Action::Promote, "ann", 0).unwrap();
    run(&spec, &mut state, 0, 100, &healthy());
    assert_eq!((state.step, state.phase.clone()), (1, Phase::AwaitingPromotion));
    // Quiet intervals at a gate do not pause it: it is already waiting for a person.
    run(&spec, &mut state, 1_000 * S, 10, &quiet());
    assert_eq!(state.phase, Phase::AwaitingPromotion);
    let events = act(&spec, &mut state, Action::Promote, "ann", 2_000 * S).unwrap();
    assert_eq!(events, vec![Event::Stepped { step: 2, weight: 100 }]);
    // The last step completes after its analysis passes.
    run(&spec, &mut state, 2_000 * S, 1, &healthy());
    assert_eq!(state.phase, Phase::Completed { by: "trellis".into() });
    assert_eq!(canary_weight(&spec, &state), 100);
}

#[test]
fn promote_fully_completes_at_once_and_ended_rollouts_refuse_actions() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    assert_eq!(act(&spec, &mut state, Action::PromoteFull, "ann", 5).unwrap(), vec![Event::Completed]);
    assert_eq!((state.phase.clone(), canary_weight(&spec, &state)), (Phase::Completed { by: "ann".into() }, 100));
    for action in Action::ALL {
        let refused = act(&spec, &mut state, action, "ann", 6).unwrap_err();
        assert_eq!(refused.to_string(), format!("cannot {} rollout shop-v2: it is completed", action.name()));
    }
    assert!(tick(&spec, &mut state, u64::MAX, Some(&failing())).is_empty(), "an ended rollout is never analysed");
}

#[test]
fn pause_holds_resume_restarts_the_step_timer_and_abort_returns_traffic() {
    let spec = spec();
    let (mut state, _) = start(&spec, 0);
    assert!(act(&spec, &mut state, Action::Resume, "ann", 0).is_err(), "only a paused rollout resumes");
    act(&spec, &mut state, Action::Pause, "ann", 10 * S).unwrap();
    assert_eq!(state.phase, Phase::Paused { reason: "paused by ann".into() });
    assert!(act(&spec, &mut state, Action::Pause, "ann", 0).is_err());
    run(&spec, &mut state, 10 * S, 20, &healthy());
    assert_eq!(state.step, 0, "paused: no analysis, no steps");
    assert_eq!(act(&spec, &mut state, Action::Resume, "ann", 300 * S).unwrap(), vec![Event::Resumed]);
    assert_eq!((state.phase.clone(), state.step_started_ms), (Phase::Progressing, 300 * S));
    let events = act(&spec, &mut state, Action::Abort, "bob", 301 * S).unwrap();
    assert_eq!(events, vec![Event::Aborted { reason: "aborted by bob".into() }]);
    assert_eq!(canary_weight(&spec, &state), 0);
}

#[test]
fn a_restart_in_any_state_keeps_the_state_and_demands_fresh_analysis() {
    let spec = spec();
    let mut states = Vec::new();
    let (s, _) = start(&spec, 0);
    states.push(s.clone());
    let mut gate = s.clone();
    act(&spec, &mut gate, Action::Promote, "ann", 0).unwrap();
    states.push(gate);
    for action in [Action::Pause, Action::Abort, Action::PromoteFull] {
        let mut t = s.clone();
        act(&spec, &mut t, action, "ann", 0).unwrap();
        states.push(t);
    }
    for before in states {
        let mut passed = before.clone();
        run(&spec, &mut passed, 0, 6, &healthy());
        let json = serde_json::to_string(&passed).unwrap();
        let mut after: RolloutState = serde_json::from_str(&json).unwrap();
        assert_eq!(after, passed, "the persisted state reads back whole");
        let weight = canary_weight(&spec, &after);
        restored(&spec, &mut after, 1_000 * S);
        assert_eq!((after.phase.clone(), canary_weight(&spec, &after)), (passed.phase.clone(), weight));
        // The first tick after the restart only analyses; nothing moves on stale numbers.
        let events = tick(&spec, &mut after, 1_000 * S, Some(&healthy()));
        assert!(events.is_empty(), "{:?}: {events:?}", after.phase);
    }
}

#[test]
fn blue_green_sends_only_header_traffic_until_it_completes() {
    let mut spec = spec();
    spec.strategy = RolloutStrategy::BlueGreen;
    let (mut state, _) = start(&spec, 0);
    assert_eq!(Placement::of(&spec, Some(&state)), Placement { weight: 0, header_routed: true });
    act(&spec, &mut state, Action::Promote, "ann", 0).unwrap();
    assert_eq!(canary_weight(&spec, &state), 0, "the gate of a blue-green rollout still holds all traffic back");
    act(&spec, &mut state, Action::Promote, "ann", 0).unwrap();
    run(&spec, &mut state, 0, 1, &healthy());
    assert_eq!(Placement::of(&spec, Some(&state)), Placement { weight: 100, header_routed: false });
}

#[test]
fn the_outcome_in_git_decides_placement_over_any_state() {
    let mut spec = spec();
    let (state, _) = start(&spec, 0);
    assert_eq!(Placement::of(&spec, None), Placement { weight: 0, header_routed: false });
    assert_eq!(Placement::of(&spec, Some(&state)), Placement { weight: 10, header_routed: false });
    spec.status = Some(RolloutOutcome::Completed);
    assert_eq!(Placement::of(&spec, Some(&state)).weight, 100);
    spec.status = Some(RolloutOutcome::Aborted);
    assert_eq!(Placement::of(&spec, None).weight, 0);
}

#[test]
fn fingerprints_follow_the_spec_but_not_its_outcome() {
    let mut other = spec();
    assert_eq!(fingerprint(&spec()), fingerprint(&spec()));
    other.status = Some(RolloutOutcome::Completed);
    assert_eq!(fingerprint(&spec()), fingerprint(&other));
    other.canary = "v3".into();
    assert_ne!(fingerprint(&spec()), fingerprint(&other));
}

#[test]
fn the_overlay_reweights_split_rules_keeps_pinned_ones_and_adds_header_rules() {
    let split = RuleConfig::catch_all(vec![
        Backend { version: "v1".into(), weight: 80 },
        Backend { version: "v2".into(), weight: 0 },
        Backend { version: "v0".into(), weight: 20 },
    ]);
    let mut pinned = RuleConfig::catch_all(vec![Backend { version: "v2".into(), weight: 100 }]);
    pinned
        .matches
        .push(MatchConfig { path: Some(crate::config::PathConfig::Prefix("/beta".into())), ..Default::default() });
    let mut config = MeshConfig::default();
    config.services.insert("shop".into(), ServiceConfig::new("shop", &["v0", "v1", "v2"], vec![pinned.clone(), split]));
    config.rollouts.insert("shop-v2".into(), spec());

    let mut plain = config.clone();
    overlay(&mut plain, &[("shop-v2".into(), Placement { weight: 25, header_routed: false })]);
    let rules = &plain.services["shop"].rules;
    assert_eq!(rules[0], pinned, "a pinned route is the user's own and stays");
    let weights: Vec<(&str, u32)> = rules[1].backends.iter().map(|b| (b.version.as_str(), b.weight)).collect();
    assert_eq!(weights, vec![("v1", 60), ("v2", 20), ("v0", 20)], "v1+v2's 80 divided 75/25; v0 keeps 20");

    overlay(&mut config, &[("shop-v2".into(), Placement { weight: 0, header_routed: true })]);
    let rules = &config.services["shop"].rules;
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[1].backends, vec![Backend { version: "v2".into(), weight: 100 }]);
    assert_eq!(rules[1].matches[0].headers[0].name, "x-canary", "the header copy comes before the rule it copies");
    assert_eq!(rules[2].backends[1], Backend { version: "v2".into(), weight: 0 });
}

#[test]
fn the_actions_a_phase_allows_are_exactly_those_act_takes() {
    let spec = spec();
    let phases = [
        Phase::Progressing,
        Phase::AwaitingPromotion,
        Phase::Paused { reason: "by ann".into() },
        Phase::Completed { by: "ann".into() },
        Phase::Aborted { reason: "p99".into(), by: "trellis".into() },
    ];
    for phase in phases {
        for action in Action::ALL {
            let mut state = start(&spec, 0).0;
            state.phase = phase.clone();
            let taken = act(&spec, &mut state, action, "ann", 0).is_ok();
            assert_eq!(taken, phase.allows(action), "{} in {}", action.name(), phase.name());
            assert_eq!(phase.actions().contains(&action), taken);
        }
    }
}

#[test]
fn analyses_tile_time_so_each_second_is_judged_once_whatever_the_ticks_jitter() {
    let (mut state, _) = start(&spec(), 0);
    // The first covers the last interval; each next one starts where the previous ended, even
    // when its tick came a second early or late.
    let mut windows = Vec::new();
    for settled in [1_000, 1_009, 1_020, 1_030] {
        let window = analysis_window(&state, settled, 10);
        state.analysed_to_s = window.1;
        windows.push(window);
    }
    assert_eq!(windows, [(990, 1_000), (1_000, 1_009), (1_009, 1_020), (1_020, 1_030)]);
    // After a long gap (the leader was away) only the last interval counts, and a tick with
    // nothing new since the last one looks at the last interval again rather than at nothing.
    assert_eq!(analysis_window(&state, 1_100, 10), (1_090, 1_100));
    assert_eq!(analysis_window(&state, 1_030, 10), (1_020, 1_030));
    assert_eq!(analysis_window(&state, 5, 10), (0, 5), "never before the epoch");
}
