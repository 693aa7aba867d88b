//! `/policy`: the revision in force with what it changed and its files, and the recent
//! revisions — rejected ones with their errors exactly as `trellis validate` prints them.

use crate::api::{PolicyFile, PolicyView, RevisionView, format_time};
use crate::components::RevisionBadge;
use leptos::prelude::*;
use trellis_model::diff::Change;

#[server(prefix = "/api/v1/ui", endpoint = "policy")]
pub async fn get_policy() -> Result<PolicyView, ServerFnError> {
    let backend = expect_context::<crate::ssr::Backend>();
    backend.0.policy().await.map_err(ServerFnError::new)
}

#[component]
pub fn PolicyPage() -> impl IntoView {
    let policy = crate::live::live_resource(get_policy);
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                policy
                    .get()
                    .map(|result| match result {
                        Ok(p) => view! { <PolicyContent policy=p/> }.into_any(),
                        Err(e) => view! { <p class="error" data-testid="policy-error">{e.to_string()}</p> }.into_any(),
                    })
            }}
        </Transition>
    }
}

#[component]
fn PolicyContent(policy: PolicyView) -> impl IntoView {
    let PolicyView { applied, files, revisions } = policy;
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
        <FilesCard files/>
        <RevisionsCard revisions/>
    }
}

#[component]
fn Changes(changes: Vec<Change>) -> impl IntoView {
    if changes.is_empty() {
        return view! { <p class="muted" data-testid="changes">"No change to traffic."</p> }.into_any();
    }
    view! {
        <ul class="changes" data-testid="changes">
            {changes.into_iter().map(|c| view! { <li>{c.text}</li> }).collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn FilesCard(files: Vec<PolicyFile>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>{format!("Files ({})", files.len())}</h2>
            {files
                .into_iter()
                .map(|f| {
                    view! {
                        <details class="file" data-testid="policy-file">
                            <summary><code>{f.path}</code></summary>
                            <pre>{f.text}</pre>
                        </details>
                    }
                })
                .collect_view()}
        </section>
    }
    .into_any()
}

#[component]
fn RevisionsCard(revisions: Vec<RevisionView>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Recent revisions"</h2>
            <ul class="revisions" data-testid="revisions">
                {revisions.into_iter().map(|r| view! { <RevisionItem revision=r/> }.into_any()).collect_view()}
            </ul>
        </section>
    }
    .into_any()
}

#[component]
fn RevisionItem(revision: RevisionView) -> impl IntoView {
    let short = revision.short();
    let rejected = revision.outcome == "rejected";
    // The same text `trellis validate` prints, so a pull request and the dashboard agree.
    let errors: String = revision.errors.iter().map(|e| e.render()).collect::<Vec<_>>().join("\n");
    let changes = revision.changes.clone();
    view! {
        <li class=format!("revision-item {}", revision.outcome) data-testid=format!("revision-{short}")>
            <div>
                <code>{short.clone()}</code>
                " "
                <strong class="outcome">{revision.outcome.clone()}</strong>
                " "
                <span>{revision.message.lines().next().unwrap_or_default().to_string()}</span>
                <span class="meta">{format!(" — {} at {}", revision.author, format_time(revision.committed_at))}</span>
            </div>
            {rejected.then(|| view! { <pre class="diagnostics" data-testid="revision-errors">{errors}</pre> })}
            {(!rejected).then(|| view! { <Changes changes/> })}
        </li>
    }
}
