//! `/rollouts`: every canary with its step, weights, the analysis of each interval against the
//! thresholds, and — for operators — the buttons that steer it.

use crate::api::{RolloutView, SessionView, format_time};
use crate::chart::{Series, Threshold, TimeChart};
use crate::components::WeightBar;
use leptos::prelude::*;
use trellis_model::rollout::{Analysis, Verdict};

/// The live rollouts, and as markup the finished ones (see [`super::finished`]) and the
/// notification deliveries (see [`super::deliveries`]): one request, and one resource for the
/// page to hydrate.
#[server(prefix = "/api/v1/ui", endpoint = "rollouts")]
pub async fn get_rollouts() -> Result<(crate::api::RolloutsView, String, String), ServerFnError> {
    let backend = expect_context::<crate::ssr::Backend>();
    let finished = super::finished::markup(backend.0.finished_rollouts().await);
    let mut view = backend.0.rollouts().await;
    let deliveries = super::deliveries::markup(&std::mem::take(&mut view.deliveries));
    Ok((view, finished, deliveries))
}

/// An operator's action from the page: authorised by the session cookie plus its CSRF token.
#[server(prefix = "/api/v1/ui", endpoint = "rollout-action")]
pub async fn rollout_action(name: String, action: String, csrf: String) -> Result<RolloutView, ServerFnError> {
    let headers = crate::session::acting_headers(&csrf).await?;
    let backend = expect_context::<crate::ssr::Backend>();
    backend.0.act(&headers, &name, &action).await.map_err(crate::session::refused)
}

/// What the page's controls share across live refreshes, which re-render every card: the
/// action in flight with its outcome, and the confirmation being asked (rollout, action).
#[derive(Clone, Copy)]
struct Steering {
    act: ServerAction<RolloutAction>,
    /// The rollout the last action was for, so its outcome shows on that card.
    acted_on: RwSignal<Option<String>>,
    confirming: RwSignal<Option<(String, String)>>,
}

#[component]
pub fn RolloutsPage() -> impl IntoView {
    let rollouts = crate::live::live_resource(get_rollouts);
    let session = crate::session::session_resource();
    provide_context(Steering {
        act: ServerAction::<RolloutAction>::new(),
        acted_on: RwSignal::new(None),
        confirming: RwSignal::new(None),
    });
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let session = session.get().and_then(|s| s.ok()).unwrap_or_default();
                rollouts.get().map(|r| match r {
                    Ok((list, finished, deliveries)) => {
                        let live = if list.items.is_empty() {
                            view! {
                                <p class="card" data-testid="rollouts-empty">
                                    "No Rollout in the applied revision. Commit one (kind: Rollout) to start a canary."
                                </p>
                            }
                            .into_any()
                        } else {
                            list.items
                                .into_iter()
                                .map(|r| view! { <RolloutCard rollout=r session=session.clone()/> }.into_any())
                                .collect_view()
                                .into_any()
                        };
                        view! {
                            {live}
                            <section class="card" data-testid="finished-rollouts" inner_html=finished></section>
                            <section class="card" data-testid="notification-deliveries" inner_html=deliveries></section>
                        }
                        .into_any()
                    }
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                })
            }}
        </Transition>
    }
}

#[component]
fn RolloutCard(rollout: RolloutView, session: SessionView) -> impl IntoView {
    let r = rollout;
    let step = if r.steps.is_empty() { String::new() } else { format!("step {} of {}", r.step + 1, r.steps.len()) };
    let weights = vec![(r.stable.clone(), 100 - r.canary_weight), (r.canary.clone(), r.canary_weight)];
    let thresholds = format!(
        "every {} s: success ≥ {}%, p99 ≤ {} ms, at least {} requests · failures {}/{} · inconclusive in a row {}/{}",
        r.interval_ms / 1000,
        r.min_success_rate,
        r.max_p99_ms,
        r.min_requests,
        r.failures,
        r.max_failures,
        r.inconclusive,
        r.max_inconclusive
    );
    let buttons = (session.operator && !r.actions.is_empty())
        .then(|| view! { <Controls rollout=r.clone() csrf=session.csrf.clone().unwrap_or_default()/> });
    view! {
        <section class="card rollout" data-testid=format!("rollout-{}", r.name)>
            <h2>
                {r.name.clone()} " "
                <span class=format!("phase {}", r.phase) data-testid="rollout-phase">{r.phase.clone()}</span>
            </h2>
            <p>
                <strong>{r.service.clone()}</strong> ": " {r.stable.clone()} " → " {r.canary.clone()}
                " · " {r.strategy.clone()} " · " <span data-testid="rollout-step">{step}</span>
                {r.header_routed.then_some(" · header-routed requests reach the canary")}
            </p>
            <div class="weights">
                <WeightBar weights/>
                <span data-testid="rollout-weight-stable">{format!("{} {}%", r.stable, 100 - r.canary_weight)}</span>
                " · "
                <span data-testid="rollout-weight-canary">{format!("{} {}%", r.canary, r.canary_weight)}</span>
            </div>
            {r.reason.clone().map(|why| view! { <p class="reason" data-testid="rollout-reason">{why}</p> })}
            <p class="muted">{thresholds}</p>
            {buttons}
            {(!r.analyses.is_empty()).then(|| view! { <AnalysisCharts rollout=r.clone()/> })}
            <AnalysisTable analyses=r.analyses.clone() ended=r.recorded.is_some()/>
        </section>
    }
}

/// The operator's buttons. Promote fully and Abort ask for a second click.
#[component]
fn Controls(rollout: RolloutView, csrf: String) -> impl IntoView {
    let Steering { act, acted_on, confirming } = expect_context::<Steering>();
    let name = rollout.name.clone();
    let send = {
        let (name, csrf) = (name.clone(), csrf.clone());
        move |action: String| {
            confirming.set(None);
            acted_on.set(Some(name.clone()));
            act.dispatch(RolloutAction { name: name.clone(), action, csrf: csrf.clone() });
        }
    };
    let buttons = rollout
        .actions
        .iter()
        .map(|a| {
            let (a, send) = (a.clone(), send.clone());
            let label = label(&a);
            let risky = a == "abort" || a == "promote-full";
            let ask = (name.clone(), a.clone());
            view! {
                <button class=format!("action {a}") data-testid=format!("action-{a}") disabled=move || act.pending().get()
                    on:click=move |_| if risky { confirming.set(Some(ask.clone())) } else { send(a.clone()) }>
                    {label}
                </button>
            }
        })
        .collect_view();
    let (mine, title) = (name.clone(), name.clone());
    let confirm = move || {
        let name = &title;
        confirming.get().filter(|(n, _)| *n == mine).map(|(_, a)| {
            let what = if a == "abort" {
                format!("Abort {name}? All traffic returns to {} at once.", rollout.stable)
            } else {
                format!("Promote {name} fully? All traffic moves to {} at once.", rollout.canary)
            };
            let send = send.clone();
            view! {
                <div class="confirm" data-testid="confirm">
                    {what} " "
                    <button data-testid="confirm-yes" on:click=move |_| send(a.clone())>"Yes, " {label(&a)}</button>
                    " "
                    <button data-testid="confirm-no" on:click=move |_| confirming.set(None)>"Cancel"</button>
                </div>
            }
        })
    };
    let mine = name.clone();
    let error = move || {
        let for_me = acted_on.get().as_deref() == Some(mine.as_str());
        act.value().get().filter(|_| for_me).and_then(|r| r.err()).map(|e| {
            view! { <p class="error" data-testid="action-error">{crate::session::error_text(&e)}</p> }
        })
    };
    view! {
        <div class="controls" data-testid="rollout-controls">{buttons}</div>
        {confirm}
        {error}
    }
}

fn label(action: &str) -> &'static str {
    match action {
        "promote" => "Promote",
        "promote-full" => "Promote fully",
        "pause" => "Pause",
        "resume" => "Resume",
        "abort" => "Abort",
        _ => "?",
    }
}

/// The canary's success rate and p99 per analysis, against their labelled thresholds; each
/// dot is coloured by its verdict.
#[component]
fn AnalysisCharts(rollout: RolloutView) -> impl IntoView {
    let a = &rollout.analyses;
    let marks: Vec<&'static str> = a.iter().map(|x| verdict_class(&x.verdict)).collect();
    let series = |values: Vec<(u64, Option<f64>)>| {
        vec![Series { label: format!("{} (canary)", rollout.canary), values, marks: marks.clone() }]
    };
    let success = series(a.iter().map(|x| (x.at_ms, x.success_rate)).collect());
    let p99 = series(a.iter().map(|x| (x.at_ms, x.p99_ms)).collect());
    let floor = a.iter().filter_map(|x| x.success_rate).fold(rollout.min_success_rate, f64::min).min(99.0) - 1.0;
    let min_success =
        Threshold { value: rollout.min_success_rate, label: format!("min {}%", rollout.min_success_rate) };
    let max_p99 = Threshold { value: rollout.max_p99_ms as f64, label: format!("max {} ms", rollout.max_p99_ms) };
    let none = "No analysis measured it yet: each needs requests to the canary in its interval.";
    view! {
        <div class="charts">
            <TimeChart testid="rollout-chart-success".to_string() title="canary success %".to_string() unit="%"
                series=success thresholds=vec![min_success] range=Some((floor.max(0.0), 100.0)) empty=none.to_string() headline=None/>
            <TimeChart testid="rollout-chart-p99".to_string() title="canary p99 ms".to_string() unit="ms"
                series=p99 thresholds=vec![max_p99] range=None empty=none.to_string() headline=None/>
        </div>
    }
}

fn verdict_class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// The newest analyses first, with their numbers.
#[component]
fn AnalysisTable(analyses: Vec<Analysis>, ended: bool) -> impl IntoView {
    if analyses.is_empty() {
        let why = match ended {
            true => "No analyses were made here: the outcome is recorded in git (see above).",
            false => {
                "No analyses yet: the first comes one interval after the rollout starts, once the canary has traffic."
            }
        };
        return view! { <p class="muted" data-testid="analysis-none">{why}</p> }.into_any();
    }
    let rows = analyses
        .iter()
        .rev()
        .take(12)
        .map(|a| {
            let pct = a.success_rate.map_or("-".to_string(), |s| format!("{s:.1}%"));
            let p99 = a.p99_ms.map_or("-".to_string(), |p| format!("{p:.0} ms"));
            view! {
                <tr data-testid="analysis" class=verdict_class(&a.verdict)>
                    <td>{format_time(a.at_ms as i64)}</td>
                    <td>{a.step + 1}</td>
                    <td>{format!("{}%", a.weight)}</td>
                    <td>{a.requests}</td>
                    <td>{pct}</td>
                    <td>{p99}</td>
                    <td class="verdict" data-testid="analysis-verdict">{verdict_class(&a.verdict)}</td>
                    <td>{a.detail.clone().unwrap_or_default()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="analyses">
            <thead><tr>
                <th>"At"</th><th>"Step"</th><th>"Weight"</th><th>"Requests"</th><th>"Success"</th><th>"p99"</th><th>"Verdict"</th><th>""</th>
            </tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
