//! `/fleet`: every live proxy, what it runs, and whether the fleet has caught up.

use crate::api::{ClusterView, FleetView, format_time, short_sha};
use crate::components::ProxyRow;
use leptos::prelude::*;

#[server(prefix = "/api/v1/ui", endpoint = "fleet")]
pub async fn get_fleet() -> Result<FleetView, ServerFnError> {
    Ok(expect_context::<crate::ssr::Backend>().0.fleet())
}

#[component]
pub fn FleetPage() -> impl IntoView {
    let fleet = crate::live::live_resource(get_fleet);
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || fleet.get().map(|r| match r {
                Ok(f) => view! { <FleetContent fleet=f/> }.into_any(),
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn FleetContent(fleet: FleetView) -> impl IntoView {
    let state = if fleet.total > 0 && fleet.synced == fleet.total { "synced" } else { "lagging" };
    let summary = match &fleet.revision {
        Some(r) => format!("{} of {} proxies run revision {}", fleet.synced, fleet.total, short_sha(r)),
        None => "No revision applied yet".to_string(),
    };
    let newest = fleet.proxies.iter().map(|p| p.last_seen).max().unwrap_or_default();
    let now = fleet.now_ms;
    // The issuer warns a week ahead, the anchor a month: both are renewed by people.
    let expiry = |what: &'static str, at: Option<i64>, warn_ms: i64, testid: &'static str| {
        at.map(|at| {
            let class = if at <= now {
                "error"
            } else if at - now < warn_ms {
                "warn"
            } else {
                "muted"
            };
            view! { <p class=class data-testid=testid>{format!("{what} expires {}", format_time(at))}</p> }
        })
    };
    let control_plane = fleet.control_plane.clone();
    view! {
        <section class=format!("card sync {state}") data-testid="fleet-sync">
            <h2>"Sync status"</h2>
            <p data-testid="fleet-sync-summary">{summary}</p>
            <p class="muted">{format!("last heard from a proxy at {}", format_time(newest))}</p>
            {expiry("The issuer", fleet.issuer_expires, 7 * 86_400_000, "issuer-expiry")}
            {expiry("The trust anchor", fleet.anchor_expires, 30 * 86_400_000, "anchor-expiry")}
        </section>
        <ControlPlane view=control_plane/>
        <section class="card">
            <h2>"Proxies"</h2>
            <table data-testid="fleet-proxies">
                <thead><tr><th>"Proxy"</th><th>"Service"</th><th>"Address"</th><th>"Revision"</th><th>"Status"</th><th>"Last heard"</th><th>"Certificate"</th></tr></thead>
                <tbody>{fleet.proxies.into_iter().map(|p| view! { <ProxyRow proxy=p with_time=Some(now)/> }.into_any()).collect_view()}</tbody>
            </table>
        </section>
    }
    .into_any()
}

/// The control plane's replicas: where each serves, which one leads and since when.
#[component]
fn ControlPlane(view: ClusterView) -> impl IntoView {
    let leader = match (&view.leader, view.leader_since) {
        (Some(l), Some(since)) => format!("{l} leads (term {}) since {}", view.term, format_time(since)),
        _ => "No replica leads right now: a replica takes over within 5 s".to_string(),
    };
    let rows = view
        .replicas
        .into_iter()
        .map(|r| {
            let role = if r.leader {
                "leader"
            } else if r.up {
                "follower"
            } else {
                "down"
            };
            let here = if r.id == view.replica { " (answering this page)" } else { "" };
            view! {
                <tr data-testid="replica" class=if r.up { "" } else { "warn" }>
                    <td>{r.id.clone()}{here}</td>
                    <td>{r.address}</td>
                    <td data-testid="replica-role">{role}</td>
                    <td>{r.version}</td>
                    <td>{format_time(r.started_at)}</td>
                    <td>{format!("{:.1} s ago", r.seen_ago_ms as f64 / 1000.0)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card">
            <h2>"Control plane"</h2>
            <p data-testid="control-plane-leader">{leader}</p>
            {view.error.map(|e| view! { <p class="error">{format!("The database cannot be asked: {e}")}</p> })}
            <table data-testid="control-plane-replicas">
                <thead><tr><th>"Replica"</th><th>"Address"</th><th>"Role"</th><th>"Version"</th><th>"Started"</th><th>"Last heard"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}
