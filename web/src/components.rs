//! Widgets shared by pages.

use crate::api::{ProxyView, RevisionView, short_sha};
use leptos::prelude::*;

/// A revision's short SHA, message and author, coloured by outcome.
#[component]
pub fn RevisionBadge(revision: RevisionView, testid: &'static str) -> impl IntoView {
    let class = format!("revision {}", revision.outcome);
    view! {
        <div class=class data-testid=testid>
            <code data-testid=format!("{testid}-sha")>{revision.short()}</code>
            " "
            <span class="message">{revision.message.lines().next().unwrap_or_default().to_string()}</span>
            <span class="meta">
                {format!(" by {} at {}", revision.author, crate::api::format_time(revision.committed_at))}
            </span>
        </div>
    }
}

/// A horizontal bar split by version weight.
#[component]
pub fn WeightBar(weights: Vec<(String, u32)>) -> impl IntoView {
    view! {
        <div class="weightbar">
            {weights
                .into_iter()
                .enumerate()
                .map(|(i, (v, w))| {
                    view! {
                        <span class=format!("seg seg{}", i % 4) style=format!("width:{w}%") title=format!("{v}: {w}%")></span>
                    }
                })
                .collect_view()}
        </div>
    }
}

/// A certificate expiring within this is flagged (a third of a day-long certificate).
pub const CERT_WARN_MS: i64 = 8 * 3600 * 1000;

/// One proxy as a table row; `with_time` (the Fleet page, with the server's clock) adds when
/// it was last heard from and when its certificate expires.
#[component]
pub fn ProxyRow(proxy: ProxyView, with_time: Option<i64>) -> impl IntoView {
    let status = match (&proxy.nack, proxy.synced) {
        (Some(reason), _) => format!("NACK: {reason}"),
        (None, true) => "synced".to_string(),
        // Times come from the server, so server and browser render the same text.
        (None, false) => match (with_time.is_some(), proxy.lagging_since) {
            (true, Some(since)) => format!("pending since {}", crate::api::format_time(since)),
            _ => "pending".to_string(),
        },
    };
    let revision = proxy.applied_revision.as_deref().map(short_sha).unwrap_or_else(|| "-".into());
    view! {
        <tr data-testid=format!("proxy-{}", proxy.id) class=if proxy.synced { "synced" } else { "lagging" }>
            <td><code>{proxy.id.clone()}</code></td>
            <td>{format!("{}/{}", proxy.service, proxy.version)}</td>
            <td>{proxy.address.clone()}</td>
            <td data-testid="proxy-revision"><code>{revision}</code></td>
            <td data-testid="proxy-status">{status}</td>
            {with_time.map(|now| {
                let (cert, class) = match proxy.cert_expires {
                    Some(at) if at <= now => (format!("expired {}", crate::api::format_time(at)), "cert expired"),
                    Some(at) if at - now < CERT_WARN_MS => (format!("expires {}", crate::api::format_time(at)), "cert expiring"),
                    Some(at) => (format!("until {}", crate::api::format_time(at)), "cert"),
                    None => ("none".to_string(), "cert none"),
                };
                view! {
                    <td data-testid="proxy-last-seen">{crate::api::format_time(proxy.last_seen)}</td>
                    <td data-testid="proxy-cert" class=class>{cert}</td>
                }
            })}
        </tr>
    }
}

/// Text for HTML or SVG markup built as a string (a static part the browser need not
/// hydrate piece by piece).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
