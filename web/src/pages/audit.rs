//! `/audit`: the audit log as a filterable, paginated timeline. The filters live in the URL
//! (`/audit?service=inventory&actor=ann`), so a view can be shared as a link; each entry
//! opens to what it carries.

use crate::api::{AuditEntry, AuditFilter, AuditPage, format_time, is_routine, parse_time, runs};
use leptos::prelude::*;
use leptos_router::components::Form;
use leptos_router::hooks::use_query_map;

/// `filter` is optional on the wire: the URL encoding leaves out a filter with no field set, and
/// a required argument then failed the live refresh of an unfiltered page.
#[server(prefix = "/api/v1/ui", endpoint = "audit")]
pub async fn get_audit(filter: Option<AuditFilter>, cursor: Option<String>) -> Result<AuditPage, ServerFnError> {
    let backend = expect_context::<crate::ssr::Backend>();
    backend.0.audit(filter.unwrap_or_default(), cursor).await.map_err(ServerFnError::new)
}

const FIELDS: [(&str, &str); 7] = [
    ("kind", "kind or family (rollout)"),
    ("service", "service"),
    ("actor", "actor"),
    ("revision", "revision"),
    ("q", "words"),
    ("since", "since (2026-11-26)"),
    ("until", "until"),
];

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let tick = crate::live::live_tick();
    // A date that does not parse is said so, rather than dropped from the filter: the log
    // unfiltered would look like the answer.
    let params = move || -> Result<(AuditFilter, Option<String>), String> {
        let q = query.get();
        let get = |k: &str| q.get(k).filter(|v| !v.trim().is_empty());
        let time = |k: &str| match get(k) {
            None => Ok(None),
            Some(t) => parse_time(&t).map(Some).ok_or_else(|| {
                format!("{k}: {t:?} is not a date: write 2026-11-26, 2026-11-26 13:30 or 2026-11-26T13:30:00Z (UTC)")
            }),
        };
        let filter = AuditFilter {
            kind: get("kind"),
            service: get("service"),
            actor: get("actor"),
            revision: get("revision"),
            since: time("since")?,
            until: time("until")?,
            q: get("q"),
            significant: get("significant").is_some_and(|v| v == "true"),
        };
        Ok((filter, get("cursor")))
    };
    let page = Resource::new(
        move || (params(), tick.get()),
        |(params, _)| async move {
            match params {
                Ok((filter, cursor)) => get_audit(Some(filter), cursor).await,
                Err(why) => Err(ServerFnError::new(why)),
            }
        },
    );
    let value = move |k: &'static str| query.with(|q| q.get(k).unwrap_or_default());
    view! {
        <section class="card">
            <h2>"Audit log"</h2>
            <Form method="GET" action="">
                <div class="filters" data-testid="audit-filters">
                    {FIELDS.map(|(name, placeholder)| view! {
                        <input name=name placeholder=placeholder value=move || value(name) data-testid=format!("filter-{name}")/>
                    }).collect_view()}
                    <label class="check">
                        <input type="checkbox" name="significant" value="true" data-testid="filter-significant"
                            checked=move || value("significant") == "true"/>
                        " only what matters"
                    </label>
                    <button type="submit" data-testid="filter-apply">"Filter"</button>
                    <a href="/audit" data-testid="filter-clear">"Clear"</a>
                </div>
            </Form>
        </section>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Ok(p) => view! { <Timeline page=p/> }.into_any(),
                Err(e) => view! { <p class="error" data-testid="audit-error">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn Timeline(page: AuditPage) -> impl IntoView {
    let query = use_query_map();
    let older = page.next.map(|next| {
        let mut q = query.get_untracked();
        q.replace("cursor", next);
        view! { <a href=format!("/audit{}", q.to_query_string()) data-testid="audit-older">"Older →"</a> }
    });
    let newest = query.with_untracked(|q| q.get("cursor").is_some()).then(|| {
        let mut q = query.get_untracked();
        q.remove("cursor");
        view! { <a href=format!("/audit{}", q.to_query_string()) data-testid="audit-newest">"← Newest"</a> }
    });
    if page.items.is_empty() {
        return view! { <p class="card" data-testid="audit-none">"No event matches these filters."</p> }.into_any();
    }
    view! {
        <section class="card">
            <ol class="timeline" data-testid="audit-timeline">
                {runs(&page.items).into_iter().map(|run| match run.len() {
                    1 => view! { <Event entry=page.items[run.start].clone()/> }.into_any(),
                    _ => view! { <Run entries=page.items[run].to_vec()/> }.into_any(),
                }).collect_view()}
            </ol>
            <nav class="pager">{newest} " " {older}</nav>
        </section>
    }
    .into_any()
}

/// A link to the log narrowed by one more filter, keeping the others.
fn narrowed(key: &'static str, value: &str) -> String {
    let mut q = use_query_map().get_untracked();
    q.remove("cursor");
    q.replace(key, value.to_string());
    format!("/audit{}", q.to_query_string())
}

/// A link to the log filtered by this one value only.
fn narrowed_to(key: &'static str, value: &str) -> String {
    let mut q = leptos_router::params::ParamsMap::new();
    q.insert(key, value.to_string());
    format!("/audit{}", q.to_query_string())
}

/// Consecutive routine events that agree, as one line: the newest one's words, how many, and
/// from when to when; opened, each of them.
#[component]
fn Run(entries: Vec<AuditEntry>) -> impl IntoView {
    let (newest, oldest) = (&entries[0], &entries[entries.len() - 1]);
    // The numbers in parentheses differ from one to the next; the words before them do not.
    let words = newest.summary.split(" (").next().unwrap_or_default().to_string();
    let (from, to) = (format_time(oldest.at), format_time(newest.at));
    // "2026-12-05 12:01:10 UTC–12:08:40 UTC" on one day.
    let to = match (from.get(..10) == to.get(..10), to.get(11..)) {
        (true, Some(time)) => time.to_string(),
        _ => to,
    };
    let (kind, actor, count) = (newest.kind.clone(), newest.actor.clone(), entries.len());
    let family = kind.split('.').next().unwrap_or_default().to_string();
    let class = format!("event run routine audit-{kind} family-{family}");
    view! {
        <li class=class data-testid="audit-run">
            // The links stand beside the summary, not in it: a control inside another is
            // unreachable by keyboard and confuses screen readers.
            <time>{format!("{from}–{to}")}</time>
            " " <span class="kind">{kind}</span>
            " " <a class="actor" href=narrowed("actor", &actor) data-testid="audit-actor">{actor.clone()}</a>
            " "
            <details>
                <summary>
                    <span class="summary">{words}</span>
                    " " <span class="count" data-testid="audit-run-count">{format!("× {count}")}</span>
                </summary>
                <ol class="timeline">
                    {entries.into_iter().map(|e| view! { <Event entry=e/> }).collect_view()}
                </ol>
            </details>
        </li>
    }
}

#[component]
fn Event(entry: AuditEntry) -> impl IntoView {
    let family = entry.kind.split('.').next().unwrap_or_default().to_string();
    let standing = if is_routine(&entry.kind) { "routine" } else { "significant" };
    let service = entry.service.clone().map(|s| {
        view! { <a class="service" href=narrowed("service", &s) data-testid="audit-service">{s.clone()}</a> }
    });
    view! {
        <li class=format!("event {standing} audit-{} family-{family}", entry.kind) data-testid="audit-event">
            <time>{format_time(entry.at)}</time>
            " " <span class="kind" data-testid="audit-kind">{entry.kind.clone()}</span>
            " " <a class="actor" href=narrowed("actor", &entry.actor) data-testid="audit-actor">{entry.actor.clone()}</a>
            " " {service}
            " "
            <details>
                <summary><span class="summary" data-testid="audit-summary">{entry.summary.clone()}</span></summary>
                <Detail entry=entry.clone()/>
            </details>
        </li>
    }
}

/// What an event carries: a revision's changes and errors, a link to a rollout, or its JSON.
#[component]
fn Detail(entry: AuditEntry) -> impl IntoView {
    let d = &entry.detail;
    let errors: Vec<String> = d["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| serde_json::from_value::<trellis_model::Diagnostic>(e.clone()).ok())
                .map(|e| e.to_string())
                .collect()
        })
        .unwrap_or_default();
    let changes: Vec<String> = d["changes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["text"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let rollout = d["rollout"].as_str().map(str::to_string).or_else(|| {
        entry
            .kind
            .starts_with("rollout.")
            .then(|| entry.summary.split_whitespace().nth(1).unwrap_or_default().to_string())
    });
    let revision = entry.revision.clone().map(|r| {
        let everything = narrowed_to("revision", &r);
        view! { <p>"Revision " <code>{r.clone()}</code> " · " <a href=everything data-testid="audit-revision">"everything about it"</a></p> }
    });
    view! {
        <div class="detail" data-testid="audit-detail">
            {revision}
            {(!changes.is_empty()).then(|| view! {
                <p>"What it changed:"</p>
                <ul class="changes">{changes.into_iter().map(|c| view! { <li data-testid="audit-change">{c}</li> }).collect_view()}</ul>
            })}
            {(!errors.is_empty()).then(|| view! {
                <p>"Errors:"</p>
                <pre class="diagnostics">{errors.into_iter().map(|e| view! { <div data-testid="audit-error-line">{e}</div> }).collect_view()}</pre>
            })}
            {rollout.map(|r| view! { <p><a href=format!("/rollouts#rollout-{r}") data-testid="audit-rollout">"Rollout " {r.clone()}</a></p> })}
            <details class="raw"><summary>"Everything it carries"</summary><pre>{serde_json::to_string_pretty(d).unwrap_or_default()}</pre></details>
            {entry.hash.clone().map(|h| view! { <p class="muted">"Chain link " <code>{h}</code></p> })}
        </div>
    }
}
