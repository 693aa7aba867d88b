//! `/`: the applied revision, services and their weights, the fleet, the latest audit entries.

use crate::api::{AuditEntry, Overview, ProxyView, RevisionView, ServiceView, format_time};
use crate::components::{ProxyRow, RevisionBadge, WeightBar};
use leptos::prelude::*;

#[server(prefix = "/api/v1/ui", endpoint = "overview")]
pub async fn get_overview() -> Result<Overview, ServerFnError> {
    let backend = expect_context::<crate::ssr::Backend>();
    backend.0.overview().await.map_err(ServerFnError::new)
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let overview = crate::live::live_resource(get_overview);
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                overview
                    .get()
                    .map(|result| match result {
                        Ok(o) => view! { <OverviewView overview=o/> }.into_any(),
                        Err(e) => {
                            view! { <p class="error" data-testid="overview-error">{e.to_string()}</p> }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
}

#[component]
fn OverviewView(overview: Overview) -> impl IntoView {
    let Overview { applied, latest, services, proxies, audit } = overview;
    // Each card is type-erased so the page's view type stays shallow.
    view! {
        <RevisionCard applied latest/>
        <ServicesCard services/>
        <ProxiesCard proxies/>
        <AuditCard audit/>
    }
}

#[component]
fn RevisionCard(applied: Option<RevisionView>, latest: Option<RevisionView>) -> impl IntoView {
    let applied = match applied {
        Some(r) => view! { <RevisionBadge revision=r testid="applied-revision"/> }.into_any(),
        None => view! { <p data-testid="applied-revision">"No valid revision yet."</p> }.into_any(),
    };
    let rejection = latest.map(|r| {
        let errors = r.errors.clone();
        view! {
            <div class="rejection" data-testid="latest-rejection">
                <h3>"Rejected newer commit"</h3>
                <RevisionBadge revision=r testid="rejected-revision"/>
                <ul>
                    {errors
                        .into_iter()
                        .map(|d| view! { <li data-testid="rejection-error"><code>{d.to_string()}</code></li> })
                        .collect_view()}
                </ul>
            </div>
        }
        .into_any()
    });
    view! {
        <section class="card" data-testid="overview">
            <h2>"Applied revision"</h2>
            {applied}
            {rejection}
        </section>
    }
    .into_any()
}

#[component]
fn ServicesCard(services: Vec<ServiceView>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Services"</h2>
            <table data-testid="services">
                <thead><tr><th>"Service"</th><th>"Versions and weights"</th><th>"Split"</th></tr></thead>
                <tbody>{services.into_iter().map(|s| view! { <ServiceRow service=s/> }.into_any()).collect_view()}</tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
fn ProxiesCard(proxies: Vec<ProxyView>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Proxies"</h2>
            <table data-testid="proxies">
                <thead><tr><th>"Proxy"</th><th>"Service"</th><th>"Address"</th><th>"Revision"</th><th>"Status"</th></tr></thead>
                <tbody>{proxies.into_iter().map(|p| view! { <ProxyRow proxy=p with_time=None/> }.into_any()).collect_view()}</tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
fn AuditCard(audit: Vec<AuditEntry>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Latest audit entries"</h2>
            <ul class="audit" data-testid="audit-list">
                {audit.into_iter().map(|e| view! { <AuditRow entry=e/> }.into_any()).collect_view()}
            </ul>
        </section>
    }
    .into_any()
}

#[component]
fn ServiceRow(service: ServiceView) -> impl IntoView {
    let name = service.name.clone();
    let weights: Vec<(String, u32)> = service.versions.iter().map(|v| (v.name.clone(), v.weight)).collect();
    view! {
        <tr data-testid=format!("service-{name}")>
            <td class="name">{name.clone()}</td>
            <td>
                {service
                    .versions
                    .into_iter()
                    .map(|v| {
                        view! {
                            <span class="version">
                                {v.name.clone()} " "
                                <strong data-testid=format!("weight-{}-{}", name, v.name)>{format!("{}%", v.weight)}</strong>
                                <small>{format!(" ({} {})", v.proxies, if v.proxies == 1 { "proxy" } else { "proxies" })}</small>
                            </span>
                        }
                    })
                    .collect_view()}
            </td>
            <td><WeightBar weights/></td>
        </tr>
    }
}

#[component]
fn AuditRow(entry: AuditEntry) -> impl IntoView {
    view! {
        <li data-testid="audit-entry" class=format!("audit-{}", entry.kind)>
            <time>{format_time(entry.at)}</time>
            " "
            <span class="kind">{entry.kind.clone()}</span>
            " "
            <span class="summary">{entry.summary.clone()}</span>
            <span class="actor">{format!(" — {}", entry.actor)}</span>
        </li>
    }
}
