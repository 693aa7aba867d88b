//! The service graph as server-rendered SVG: a layered layout (callers left of callees, each
//! layer ordered to keep edges short, long layers wrapped into several columns), edges with
//! their rate, success and version split, and the lens the operator looks through: a search
//! that marks matching services, and a focus on one service and its neighbours. At 200
//! services this is a few hundred elements the browser paints once; the bundle stays small.

use crate::api::{EdgeView, Golden, NodeView, TcpView, TopologyView};
use crate::components::escape;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// What the operator asked to see: a service to focus on, and a search.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lens {
    pub focus: Option<String>,
    pub query: String,
    pub window: u64,
}

impl Lens {
    /// This page with `focus` (and the same window, no search).
    fn focus_href(&self, focus: &str) -> String {
        format!("/topology?window={}&amp;focus={}", self.window, escape(&super::urlencode(focus)))
    }
}

/// Beyond this many services, nodes are drawn compact and edges without labels (their
/// figures are in each edge's tooltip and in the focused view).
const COMPACT_FROM: usize = 30;
const LABELS_UP_TO: usize = 40;
/// A layer longer than this wraps into another column, so the graph stays on a screen or two.
const ROWS_PER_COLUMN: usize = 25;

struct Size {
    node_w: f64,
    node_h: f64,
    col_w: f64,
    row_h: f64,
}

const ROOMY: Size = Size { node_w: 170.0, node_h: 64.0, col_w: 380.0, row_h: 110.0 };
const COMPACT: Size = Size { node_w: 150.0, node_h: 36.0, col_w: 250.0, row_h: 46.0 };

/// The page's graph, the search's findings and the focused service's details, as markup.
pub fn markup(topology: &TopologyView, lens: &Lens) -> String {
    let mut html = String::new();
    let focus = lens.focus.as_deref().filter(|f| topology.nodes.iter().any(|n| n.service == *f));
    let shown: BTreeSet<&str> = match focus {
        Some(f) => neighbourhood(f, &topology.edges),
        None => topology.nodes.iter().map(|n| n.service.as_str()).collect(),
    };
    let nodes: Vec<&NodeView> = topology.nodes.iter().filter(|n| shown.contains(n.service.as_str())).collect();
    let edges: Vec<&EdgeView> =
        topology.edges.iter().filter(|e| shown.contains(e.from.as_str()) && shown.contains(e.to.as_str())).collect();
    let query = lens.query.trim().to_lowercase();
    let matches: BTreeSet<&str> = if query.is_empty() {
        BTreeSet::new()
    } else {
        topology.nodes.iter().map(|n| n.service.as_str()).filter(|s| s.contains(query.as_str())).collect()
    };

    let _ = write!(
        html,
        r#"<p class="muted" data-testid="topology-summary">{} services · {} edges · figures over the last {}</p>"#,
        topology.nodes.len(),
        topology.edges.len(),
        window_words(topology.window_s)
    );
    if let Some(f) = lens.focus.as_deref() {
        html.push_str(&focus_line(f, focus.is_some(), shown.len(), lens));
    }
    if !query.is_empty() {
        html.push_str(&search_line(&lens.query, &matches, lens));
    }
    if topology.nodes.is_empty() {
        html.push_str(r#"<p class="muted" data-testid="topology-empty">No traffic in this window yet: services appear once their proxies report requests.</p>"#);
        return html;
    }
    html.push_str(&svg(&nodes, &edges, &matches, !query.is_empty(), lens));
    if let Some(node) = focus.and_then(|f| topology.nodes.iter().find(|n| n.service == f)) {
        html.push_str(&details(node, &topology.edges, lens));
    }
    html
}

/// A service and every service that calls it or that it calls.
fn neighbourhood<'a>(focus: &'a str, edges: &'a [EdgeView]) -> BTreeSet<&'a str> {
    let mut shown = BTreeSet::from([focus]);
    for e in edges {
        if e.from == focus {
            shown.insert(e.to.as_str());
        }
        if e.to == focus {
            shown.insert(e.from.as_str());
        }
    }
    shown
}

fn focus_line(focus: &str, found: bool, shown: usize, lens: &Lens) -> String {
    let all = format!(r#"<a href="/topology?window={}" data-testid="focus-clear">Show all services</a>"#, lens.window);
    if !found {
        return format!(
            r#"<p class="error" data-testid="focus-line">No traffic to or from {} in this window. {all}</p>"#,
            escape(focus)
        );
    }
    format!(
        r#"<p data-testid="focus-line">Focused on <strong>{}</strong> and its {} neighbour{}. {all}</p>"#,
        escape(focus),
        shown - 1,
        if shown == 2 { "" } else { "s" }
    )
}

fn search_line(query: &str, matches: &BTreeSet<&str>, lens: &Lens) -> String {
    if matches.is_empty() {
        return format!(r#"<p class="muted" data-testid="search-line">No service matches “{}”.</p>"#, escape(query));
    }
    let links: Vec<String> =
        matches.iter().take(20).map(|s| format!(r#"<a href="{}">{}</a>"#, lens.focus_href(s), escape(s))).collect();
    let more = if matches.len() > 20 { format!(" and {} more", matches.len() - 20) } else { String::new() };
    format!(
        r#"<p data-testid="search-line">{} service{} match “{}”: {}{more}</p>"#,
        matches.len(),
        if matches.len() == 1 { "" } else { "s" },
        escape(query),
        links.join(", ")
    )
}

fn svg(nodes: &[&NodeView], edges: &[&EdgeView], matches: &BTreeSet<&str>, searching: bool, lens: &Lens) -> String {
    let size = if nodes.len() > COMPACT_FROM { &COMPACT } else { &ROOMY };
    let names: Vec<&str> = nodes.iter().map(|n| n.service.as_str()).collect();
    let pairs: Vec<(&str, &str)> = edges.iter().map(|e| (e.from.as_str(), e.to.as_str())).collect();
    let slots = layout(&names, &pairs);
    let at = |name: &str| {
        slots.get(name).map(|&(col, row)| (20.0 + col as f64 * size.col_w, 20.0 + row as f64 * size.row_h))
    };
    let width = slots.values().map(|s| s.0).max().unwrap_or(0) as f64 * size.col_w + size.node_w + 40.0;
    let height = slots.values().map(|s| s.1).max().unwrap_or(0) as f64 * size.row_h + size.node_h + 40.0;
    let labels = edges.len() <= LABELS_UP_TO;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg data-testid="topology" class="topology" role="group" aria-label="service graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#98a2b3"></path></marker></defs>"##
    );
    for e in edges {
        let (Some(from), Some(to)) = (at(&e.from), at(&e.to)) else { continue };
        out.push_str(&edge(
            e,
            (from.0 + size.node_w, from.1 + size.node_h / 2.0),
            (to.0, to.1 + size.node_h / 2.0),
            labels,
        ));
    }
    for n in nodes {
        let Some((x, y)) = at(&n.service) else { continue };
        let dim = searching && !matches.contains(n.service.as_str());
        out.push_str(&node(n, (x, y), size, dim, matches.contains(n.service.as_str()), lens));
    }
    out.push_str("</svg>");
    out
}

fn edge(e: &EdgeView, (x1, y1): (f64, f64), (x2, y2): (f64, f64), labels: bool) -> String {
    // A TCP edge carries connections, not requests: it says so, in their terms.
    let (figures, health) = match &e.tcp {
        Some(t) if e.golden.requests == 0 => (tcp_label(t), tcp_health(t)),
        _ => (format!("{:.1} rps · {}", e.golden.rps, rate(&e.golden)), health(&e.golden)),
    };
    let split = split(&e.versions);
    let class = if e.denied > 0 { "edge denied".to_string() } else { format!("edge {health}") };
    // Thicker with more traffic, on a log scale: 1 rps and 1,000 rps both stay readable.
    let stroke = 1.5 + (1.0 + e.golden.rps).log10().min(3.0);
    // Forward edges bow gently; one back to an earlier layer loops around.
    let bend = ((x2 - x1).abs() / 2.0).max(60.0);
    let path = format!("M {x1:.1} {y1:.1} C {:.1} {y1:.1}, {:.1} {y2:.1}, {x2:.1} {y2:.1}", x1 + bend, x2 - bend);
    let denied = (e.denied > 0).then(|| format!("{} denied by {}", e.denied, e.denied_by.join(", ")));
    let title =
        [Some(format!("{} → {}: {figures}", e.from, e.to)), (!split.is_empty()).then(|| split.clone()), denied.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
    let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let mut out = format!(
        r#"<g data-testid="edge-{}-{}" data-rps="{:.3}" data-denied="{}" data-split="{}" class="{class}"><title>{}</title><path d="{path}" style="stroke-width:{stroke:.1}" marker-end="url(#arrow)"></path>"#,
        escape(&e.from),
        escape(&e.to),
        e.golden.rps,
        e.denied,
        escape(&split),
        escape(&title)
    );
    if labels {
        let label = if split.is_empty() { figures } else { format!("{figures} · {split}") };
        let _ = write!(out, r#"<text x="{mx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, my - 6.0, escape(&label));
    }
    if let Some(why) = denied {
        let _ = write!(
            out,
            r#"<text class="denied" x="{mx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            my + 12.0,
            escape(&why)
        );
    }
    out.push_str("</g>");
    out
}

fn node(n: &NodeView, (x, y): (f64, f64), size: &Size, dim: bool, matched: bool, lens: &Lens) -> String {
    let (figures, health) = match &n.tcp {
        Some(t) if n.golden.requests == 0 => (tcp_label(t), tcp_health(t)),
        _ => (format!("{:.1} rps · {}", n.golden.rps, rate(&n.golden)), health(&n.golden)),
    };
    let versions = n.versions.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(" · ");
    let versions = match (&n.tcp, versions.is_empty()) {
        (Some(_), true) => "tcp".to_string(),
        (None, true) => "no traffic".to_string(),
        (_, false) => versions,
    };
    let mut class = format!("node {health}");
    if lens.focus.as_deref() == Some(n.service.as_str()) {
        class.push_str(" selected");
    }
    if dim {
        class.push_str(" dim");
    }
    if matched {
        class.push_str(" match");
    }
    let name = escape(&n.service);
    let label = escape(&format!("{}: {figures} ({versions})", n.service));
    let mut out = format!(
        r#"<a data-testid="node-{name}" class="{class}" href="{}" aria-label="{label}"><title>{label}</title><rect x="{x}" y="{y}" width="{}" height="{}" rx="8"></rect><text x="{}" y="{}" class="name">{name}</text><text x="{}" y="{}" class="sub">{}</text>"#,
        lens.focus_href(&n.service),
        size.node_w,
        size.node_h,
        x + 10.0,
        y + if size.node_h < 50.0 { 15.0 } else { 22.0 },
        x + 10.0,
        y + if size.node_h < 50.0 { 29.0 } else { 40.0 },
        escape(&figures)
    );
    if size.node_h >= 50.0 {
        let _ = write!(out, r#"<text x="{}" y="{}" class="sub">{}</text>"#, x + 10.0, y + 56.0, escape(&versions));
    }
    out.push_str("</a>");
    out
}

/// The focused service's figures per version, and its callers' and callees' edges.
fn details(node: &NodeView, edges: &[EdgeView], lens: &Lens) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let row = |label: &str, g: &Golden| {
        format!(
            "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(label),
            g.rps,
            rate(g),
            ms(g.p50_ms),
            ms(g.p95_ms),
            ms(g.p99_ms)
        )
    };
    let mut out = format!(
        r#"<div class="node-details" data-testid="node-details"><h3>{}</h3><table><thead><tr><th></th><th>RPS</th><th>Success</th><th>p50</th><th>p95</th><th>p99</th></tr></thead><tbody>{}"#,
        escape(&node.service),
        row("all versions", &node.golden)
    );
    for (v, g) in &node.versions {
        out.push_str(&row(v, g));
    }
    out.push_str("</tbody></table>");
    let neighbours = |title: &str, list: Vec<(&str, &EdgeView)>| {
        if list.is_empty() {
            return String::new();
        }
        let items: Vec<String> = list
            .iter()
            .map(|(other, e)| {
                let split = split(&e.versions);
                let split = if split.is_empty() { String::new() } else { format!(" · {}", escape(&split)) };
                format!(
                    r#"<li><a href="{}">{}</a>: {:.1} rps · {}{split}</li>"#,
                    lens.focus_href(other),
                    escape(other),
                    e.golden.rps,
                    rate(&e.golden)
                )
            })
            .collect();
        format!("<h4>{title}</h4><ul>{}</ul>", items.join(""))
    };
    out.push_str(&neighbours(
        "Called by",
        edges.iter().filter(|e| e.to == node.service).map(|e| (e.from.as_str(), e)).collect(),
    ));
    out.push_str(&neighbours(
        "Calls",
        edges.iter().filter(|e| e.from == node.service).map(|e| (e.to.as_str(), e)).collect(),
    ));
    out.push_str("</div>");
    out
}

/// "v1 90% · v2 10%" when more than one version answered; nothing otherwise.
fn split(versions: &[(String, u64)]) -> String {
    let total: u64 = versions.iter().map(|(_, n)| n).sum();
    if versions.len() < 2 || total == 0 {
        return String::new();
    }
    versions
        .iter()
        .map(|(v, n)| format!("{v} {:.0}%", *n as f64 * 100.0 / total as f64))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Column and row of each service. Layers by longest call path from a service nobody calls
/// (cycles are cut at the node count), then each layer ordered by the mean position of its
/// neighbours in the layers beside it, sweeping down and up a few times (the barycenter
/// heuristic of Sugiyama-style layouts), so edges cross less; a layer longer than
/// [`ROWS_PER_COLUMN`] wraps into further columns.
pub fn layout(nodes: &[&str], edges: &[(&str, &str)]) -> BTreeMap<String, (usize, usize)> {
    let mut depth: BTreeMap<&str, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for _ in 0..nodes.len() {
        let mut moved = false;
        for (from, to) in edges.iter().filter(|(f, t)| f != t) {
            let d = depth.get(from).copied().unwrap_or(0) + 1;
            if let Some(t) = depth.get_mut(to)
                && *t < d
                && d < nodes.len()
            {
                *t = d;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let layers = depth.values().max().map_or(0, |m| m + 1);
    let mut order: Vec<Vec<&str>> = vec![Vec::new(); layers];
    for (name, d) in &depth {
        order[*d].push(name);
    }
    let mut row: BTreeMap<&str, f64> = BTreeMap::new();
    for layer in &order {
        for (i, n) in layer.iter().enumerate() {
            row.insert(n, i as f64);
        }
    }
    for sweep in 0..4 {
        let down = sweep % 2 == 0;
        for d in 0..layers {
            let d = if down { d } else { layers - 1 - d };
            let mean = |n: &str| {
                let near: Vec<f64> = edges
                    .iter()
                    .filter_map(|(f, t)| match down {
                        true if *t == n && depth.get(f).is_some_and(|&x| x < d) => row.get(f).copied(),
                        false if *f == n && depth.get(t).is_some_and(|&x| x > d) => row.get(t).copied(),
                        _ => None,
                    })
                    .collect();
                (!near.is_empty()).then(|| near.iter().sum::<f64>() / near.len() as f64)
            };
            let mut keyed: Vec<(f64, &str)> =
                order[d].iter().map(|n| (mean(n).unwrap_or_else(|| row[n]), *n)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
            order[d] = keyed.into_iter().map(|(_, n)| n).collect();
            for (i, n) in order[d].iter().enumerate() {
                row.insert(n, i as f64);
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut column = 0;
    for layer in &order {
        let columns = layer.len().div_ceil(ROWS_PER_COLUMN).max(1);
        let per_column = layer.len().div_ceil(columns).max(1);
        for (i, n) in layer.iter().enumerate() {
            out.insert(n.to_string(), (column + i / per_column, i % per_column));
        }
        column += columns;
    }
    out
}

fn window_words(window_s: u64) -> String {
    match window_s {
        s if s % 60 == 0 && s >= 120 => format!("{} minutes", s / 60),
        60 => "minute".to_string(),
        s => format!("{s} seconds"),
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

#[cfg(test)]
mod tests;
