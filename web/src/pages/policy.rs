//! `/policy`: the revision in force with what it changed and its files; the recent revisions —
//! rejected ones with their errors exactly as `trellis validate` prints them; any two compared
//! (`?from=&to=`: the `trellis diff` wording and the files side by side); and, for operators,
//! a revert to an earlier revision in one click (a commit, as every change is).

use crate::api::{PolicyFile, PolicyView, Reverted, RevisionView, format_time};
use crate::components::{RevisionBadge, escape};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use trellis_model::diff::Change;

#[server(prefix = "/api/v1/ui", endpoint = "policy")]
pub async fn get_policy() -> Result<PolicyView, ServerFnError> {
    let backend = expect_context::<crate::ssr::Backend>();
    backend.0.policy().await.map_err(ServerFnError::new)
}

/// A revert from the page: authorised by the session cookie plus its CSRF token.
#[server(prefix = "/api/v1/ui", endpoint = "revert")]
pub async fn revert_revision(rev: String, csrf: String) -> Result<Reverted, ServerFnError> {
    let headers = crate::session::acting_headers(&csrf).await?;
    let backend = expect_context::<crate::ssr::Backend>();
    backend.0.revert(&headers, &rev).await.map_err(crate::session::refused)
}

/// The revert in flight with its outcome, and the revision whose revert awaits confirmation;
/// shared across live refreshes, which re-render the list.
#[derive(Clone, Copy)]
struct Reverting {
    act: ServerAction<RevertRevision>,
    confirming: RwSignal<Option<String>>,
}

#[component]
pub fn PolicyPage() -> impl IntoView {
    let policy = crate::live::live_resource(get_policy);
    let session = crate::session::session_resource();
    provide_context(Reverting { act: ServerAction::<RevertRevision>::new(), confirming: RwSignal::new(None) });
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let session = session.get().and_then(|s| s.ok()).unwrap_or_default();
                policy
                    .get()
                    .map(|result| match result {
                        Ok(p) => view! { <PolicyContent policy=p operator_csrf=session.operator.then_some(session.csrf.unwrap_or_default())/> }.into_any(),
                        Err(e) => view! { <p class="error" data-testid="policy-error">{e.to_string()}</p> }.into_any(),
                    })
            }}
        </Transition>
        <super::compare::ComparisonCard/>
    }
}

#[component]
fn PolicyContent(policy: PolicyView, operator_csrf: Option<String>) -> impl IntoView {
    let PolicyView { applied, files, revisions } = policy;
    let in_force = applied.as_ref().map(|r| r.sha.clone());
    view! {
        <section class="card" data-testid="policy-applied">
            <h2>"Revision in force"</h2>
            {match applied {
                Some(r) => {
                    let changes = r.changes.clone();
                    view! {
                        <RevisionBadge revision=r testid="policy-applied-revision"/>
                        <Changes changes/>
                    }
                        .into_any()
                }
                None => view! { <p>"No valid revision yet."</p> }.into_any(),
            }}
        </section>
        <RevisionsCard revisions in_force operator_csrf/>
        <FilesCard files/>
    }
}

/// What a revision changed, in plain words. Static text: markup, not a view to hydrate.
#[component]
fn Changes(changes: Vec<Change>) -> impl IntoView {
    let html = if changes.is_empty() {
        r#"<p class="muted">No change to traffic.</p>"#.to_string()
    } else {
        let items: String = changes.iter().map(|c| format!("<li>{}</li>", escape(&c.text))).collect();
        format!(r#"<ul class="changes">{items}</ul>"#)
    };
    view! { <div data-testid="changes" inner_html=html></div> }
}

#[component]
fn FilesCard(files: Vec<PolicyFile>) -> impl IntoView {
    let html: String = files
        .iter()
        .map(|f| {
            let (path, text) = (escape(&f.path), escape(&f.text));
            format!(r#"<details class="file" data-testid="policy-file"><summary><code>{path}</code></summary><pre>{text}</pre></details>"#)
        })
        .collect();
    view! {
        <section class="card">
            <h2>{format!("Files in force ({})", files.len())}</h2>
            <div inner_html=html></div>
        </section>
    }
}

#[component]
fn RevisionsCard(
    revisions: Vec<RevisionView>,
    in_force: Option<String>,
    operator_csrf: Option<String>,
) -> impl IntoView {
    let query = use_query_map();
    // What the form shows selected: the comparison on screen, else the revision in force
    // against the one before it.
    let previous = revisions.iter().find(|r| Some(&r.sha) != in_force.as_ref()).map(|r| r.sha.clone());
    let chosen = move |key: &str, fallback: &Option<String>| {
        query.with_untracked(|q| q.get(key)).or_else(|| fallback.clone()).unwrap_or_default()
    };
    let (from, to) = (chosen("from", &previous), chosen("to", &in_force));
    let options = |selected: String| {
        revisions
            .iter()
            .map(|r| {
                let label = format!(
                    "{} {}{}",
                    r.short(),
                    r.subject(),
                    if r.outcome == "rejected" { " (rejected)" } else { "" }
                );
                view! { <option value=r.sha.clone() selected=r.sha == selected>{label}</option> }
            })
            .collect_view()
    };
    let (from, to) = (options(from), options(to));
    view! {
        <section class="card">
            <h2>"Recent revisions"</h2>
            // A plain form: the page reloads with the comparison rendered on the server.
            <form method="get" action="/policy">
                <div class="compare-form" data-testid="compare-form">
                    <label>"Compare " <select name="from" data-testid="compare-from">{from}</select></label>
                    <label>" with " <select name="to" data-testid="compare-to">{to}</select></label>
                    " "
                    <button type="submit" data-testid="compare-submit">"Compare"</button>
                </div>
            </form>
            <RevertOutcome/>
            <ul class="revisions" data-testid="revisions">
                {revisions
                    .into_iter()
                    .map(|r| {
                        view! { <RevisionItem revision=r in_force=in_force.clone() operator_csrf=operator_csrf.clone()/> }
                    })
                    .collect_view()}
            </ul>
        </section>
    }
    .into_any()
}

#[component]
fn RevisionItem(revision: RevisionView, in_force: Option<String>, operator_csrf: Option<String>) -> impl IntoView {
    let short = revision.short();
    let rejected = revision.outcome == "rejected";
    // The same text `trellis validate` prints, so a pull request and the dashboard agree.
    let errors: String = revision.errors.iter().map(|e| e.render()).collect::<Vec<_>>().join("\n");
    let changes = revision.changes.clone();
    let current = in_force.as_deref() == Some(revision.sha.as_str());
    let compare = in_force.filter(|_| !current).map(|now| {
        view! {
            <a href=format!("/policy?from={}&to={now}", revision.sha) data-testid="compare-with-in-force">
                "compare with the revision in force"
            </a>
        }
    });
    let revert = operator_csrf
        .filter(|_| !current && !rejected)
        .map(|csrf| view! { <RevertButton sha=revision.sha.clone() short=short.clone() csrf/> });
    view! {
        <li class=format!("revision-item {}", revision.outcome) data-testid=format!("revision-{short}")>
            <div>
                <code>{short.clone()}</code>
                " "
                <strong class="outcome">{if current { "in force".to_string() } else { revision.outcome.clone() }}</strong>
                " "
                <span>{revision.subject().to_string()}</span>
                <span class="meta">{format!(" — {} at {}", revision.author, format_time(revision.committed_at))}</span>
                " " {compare} " " {revert}
            </div>
            {rejected.then(|| view! { <pre class="diagnostics" data-testid="revision-errors">{errors}</pre> })}
            {(!rejected).then(|| view! { <Changes changes/> })}
        </li>
    }
}

/// "Revert to this", then a confirmation that says what it will do.
#[component]
fn RevertButton(sha: String, short: String, csrf: String) -> impl IntoView {
    let Reverting { act, confirming } = expect_context::<Reverting>();
    let mine = sha.clone();
    let asking = move || confirming.get().as_deref() == Some(mine.as_str());
    let ask = sha.clone();
    view! {
        <button class="revert" data-testid="revert" disabled=move || act.pending().get()
            on:click=move |_| confirming.set(Some(ask.clone()))>
            "Revert to this"
        </button>
        {move || asking().then(|| view! {
            <div class="confirm" data-testid="confirm">
                {format!("Revert the policy to {short}? Trellis commits {short}'s files on top of the branch, authored in your name; the proxies follow once it is applied.")}
                " "
                <button data-testid="confirm-yes" on:click={
                    let (sha, csrf) = (sha.clone(), csrf.clone());
                    move |_| {
                        confirming.set(None);
                        act.dispatch(RevertRevision { rev: sha.clone(), csrf: csrf.clone() });
                    }
                }>"Yes, revert"</button>
                " "
                <button data-testid="confirm-no" on:click=move |_| confirming.set(None)>"Cancel"</button>
            </div>
        })}
    }
}

/// What the last revert did, or why it did not.
#[component]
fn RevertOutcome() -> impl IntoView {
    let Reverting { act, .. } = expect_context::<Reverting>();
    move || {
        act.value().get().map(|result| match result {
            Ok(r) => {
                let (to, sha) = (crate::api::short_sha(&r.to), crate::api::short_sha(&r.sha));
                let text = if r.watched {
                    format!("Committed {sha} on {}, restoring {to}'s policy: it applies once the control plane judges it.", r.branch)
                } else {
                    format!("Committed {sha} on branch {}, restoring {to}'s policy: open a pull request to merge it (signed commits are required, or outcomes go to branches).", r.branch)
                };
                view! { <p class="ok" data-testid="revert-outcome">{text}</p> }.into_any()
            }
            Err(e) => view! { <p class="error" data-testid="revert-error">{crate::session::error_text(&e)}</p> }.into_any(),
        })
    }
}
