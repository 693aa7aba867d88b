//! `/topology`: the service graph. Nodes show what each service received, edges what callers
//! sent, coloured by success rate like Kiali; selecting a node shows its golden metrics.

use crate::api::{EdgeView, Golden, NodeView, TcpView, TopologyView};
use leptos::prelude::*;
use std::collections::BTreeMap;

#[server(prefix = "/api/v1/ui", endpoint = "topology")]
pub async fn get_topology(window: u64) -> Result<TopologyView, ServerFnError> {
    let window = if [10, 60, 600].contains(&window) { window } else { 60 };
    Ok(expect_context::<crate::ssr::Backend>().0.topology(window))
}

#[component]
pub fn TopologyPage() -> impl IntoView {
    let tick = crate::live::live_tick();
    // A minute by default, as Kiali's graph, and the window of the Traffic page's figures:
    // the same service reads the same on both.
    let (window, set_window) = signal(60u64);
    let (selected, set_selected) = signal(None::<String>);
    let topology = Resource::new(move || (tick.get(), window.get()), |(_, w)| get_topology(w));
    view! {
        <section class="card">
            <div class="toolbar">
                <h2>"Topology"</h2>
                {[(10, "10 s"), (60, "1 min"), (600, "10 min")]
                    .into_iter()
                    .map(|(w, label)| view! {
                        <button
                            class:active=move || window.get() == w
                            data-testid=format!("window-{w}")
                            on:click=move |_| set_window.set(w)
                        >{label}</button>
                    })
                    .collect_view()}
            </div>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || topology.get().map(|r| match r {
                    Ok(t) => view! { <Graph topology=t selected set_selected/> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

const COL_W: f64 = 380.0;
const ROW_H: f64 = 110.0;
const NODE_W: f64 = 170.0;
const NODE_H: f64 = 64.0;

#[component]
fn Graph(
    topology: TopologyView,
    selected: ReadSignal<Option<String>>,
    set_selected: WriteSignal<Option<String>>,
) -> impl IntoView {
    let positions = layout(&topology.nodes, &topology.edges);
    let width = positions.values().map(|p| p.0).fold(0.0, f64::max) + NODE_W + 40.0;
    let height = positions.values().map(|p| p.1).fold(0.0, f64::max) + NODE_H + 40.0;
    let edges = topology.edges.clone();
    let nodes = topology.nodes.clone();
    let details = topology.nodes.clone();
    view! {
        <svg data-testid="topology" class="topology" viewBox=format!("0 0 {width} {height}") width=width height=height>
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
                    <path d="M 0 0 L 10 5 L 0 10 z" fill="#98a2b3"></path>
                </marker>
            </defs>
            {edges.into_iter().filter_map(|e| {
                let (from, to) = (positions.get(&e.from)?, positions.get(&e.to)?);
                let (x1, y1, x2, y2) = (from.0 + NODE_W, from.1 + NODE_H / 2.0, to.0, to.1 + NODE_H / 2.0);
                // A TCP edge carries connections, not requests: it says so, in their terms.
                let (label, health) = match &e.tcp {
                    Some(t) if e.golden.requests == 0 => (tcp_label(t), tcp_health(t)),
                    _ => (format!("{:.1} rps · {}", e.golden.rps, rate(&e.golden)), health(&e.golden)),
                };
                // Calls the callee refused: drawn apart, with what refused them.
                let class = if e.denied > 0 { "edge denied".to_string() } else { format!("edge {health}") };
                let denied = (e.denied > 0).then(|| {
                    let why = format!("{} denied by {}", e.denied, e.denied_by.join(", "));
                    view! { <text class="denied" x=(x1 + x2) / 2.0 y=(y1 + y2) / 2.0 + 12.0 text-anchor="middle">{why}</text> }
                });
                Some(view! {
                    <g data-testid=format!("edge-{}-{}", e.from, e.to) data-rps=format!("{:.3}", e.golden.rps) data-denied=e.denied.to_string() class=class>
                        <line x1=x1 y1=y1 x2=x2 y2=y2 marker-end="url(#arrow)"></line>
                        <text x=(x1 + x2) / 2.0 y=(y1 + y2) / 2.0 - 6.0 text-anchor="middle">{label}</text>
                        {denied}
                    </g>
                })
            }).collect_view()}
            {nodes.into_iter().filter_map(|n| {
                let (x, y) = *positions.get(&n.service)?;
                let name = n.service.clone();
                let versions = n.versions.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>().join(" · ");
                let (summary, health) = match &n.tcp {
                    Some(t) if n.golden.requests == 0 => (tcp_label(t), tcp_health(t)),
                    _ => (format!("{:.1} rps · {}", n.golden.rps, rate(&n.golden)), health(&n.golden)),
                };
                let versions = match (&n.tcp, versions.is_empty()) {
                    (Some(_), true) => "tcp".to_string(),
                    (None, true) => "no traffic".to_string(),
                    (_, false) => versions,
                };
                Some(view! {
                    <g
                        data-testid=format!("node-{}", n.service)
                        class=format!("node {health}")
                        class:selected=move || selected.get().as_deref() == Some(name.as_str())
                        on:click={
                            let name = n.service.clone();
                            move |_| set_selected.set(Some(name.clone()))
                        }
                    >
                        <rect x=x y=y width=NODE_W height=NODE_H rx="8"></rect>
                        <text x=x + 12.0 y=y + 22.0 class="name">{n.service.clone()}</text>
                        <text x=x + 12.0 y=y + 40.0 class="sub">{summary}</text>
                        <text x=x + 12.0 y=y + 56.0 class="sub">{versions}</text>
                    </g>
                })
            }).collect_view()}
        </svg>
        {move || selected.get().and_then(|s| details.iter().find(|n| n.service == s).cloned()).map(|n| view! { <NodeDetails node=n/> })}
    }
    .into_any()
}

#[component]
fn NodeDetails(node: NodeView) -> impl IntoView {
    let row = |label: String, g: &Golden| {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        view! {
            <tr>
                <td>{label}</td>
                <td>{format!("{:.2}", g.rps)}</td>
                <td>{rate(g)}</td>
                <td>{ms(g.p50_ms)}</td>
                <td>{ms(g.p95_ms)}</td>
                <td>{ms(g.p99_ms)}</td>
            </tr>
        }
    };
    view! {
        <div class="node-details" data-testid="node-details">
            <h3>{node.service.clone()}</h3>
            <table>
                <thead><tr><th></th><th>"RPS"</th><th>"Success"</th><th>"p50"</th><th>"p95"</th><th>"p99"</th></tr></thead>
                <tbody>
                    {row("all versions".into(), &node.golden)}
                    {node.versions.iter().map(|(v, g)| row(v.clone(), g)).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// "tcp · 0.5 conn/s · 12.0 kB/s": connections opened, and bytes both ways.
fn tcp_label(t: &TcpView) -> String {
    let bytes = t.sent_bytes_per_s + t.received_bytes_per_s;
    let failed = if t.failed > 0 { format!(" · {} failed", t.failed) } else { String::new() };
    format!("tcp · {:.1} conn/s · {:.1} kB/s{failed}", t.connections_per_s, bytes / 1000.0)
}

/// Connections that could not be made are a TCP service's failures.
fn tcp_health(t: &TcpView) -> &'static str {
    match (t.opened, t.failed) {
        (0, 0) => "idle",
        (_, 0) => "healthy",
        (opened, failed) if failed < opened => "degraded",
        _ => "failing",
    }
}

fn rate(g: &Golden) -> String {
    g.success_rate.map_or("no traffic".to_string(), |r| format!("{:.1}% ok", r * 100.0))
}

/// Kiali's colours: healthy from 99 %, degraded from 95 %, failing below.
fn health(g: &Golden) -> &'static str {
    match g.success_rate {
        None => "idle",
        Some(r) if r >= 0.99 => "healthy",
        Some(r) if r >= 0.95 => "degraded",
        Some(_) => "failing",
    }
}

/// Columns by call depth (callers left of callees), rows in name order.
fn layout(nodes: &[NodeView], edges: &[EdgeView]) -> BTreeMap<String, (f64, f64)> {
    let mut depth: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.service.as_str(), 0)).collect();
    // Longest path from a root; bounded by the node count so cycles cannot loop forever.
    for _ in 0..nodes.len() {
        for e in edges.iter().filter(|e| e.from != e.to) {
            let d = depth.get(e.from.as_str()).copied().unwrap_or(0) + 1;
            if let Some(t) = depth.get_mut(e.to.as_str())
                && *t < d
                && d < nodes.len()
            {
                *t = d;
            }
        }
    }
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, d) in depth {
        let row = rows.entry(d).or_default();
        out.insert(name.to_string(), (20.0 + d as f64 * COL_W, 20.0 + *row as f64 * ROW_H));
        *row += 1;
    }
    out
}
