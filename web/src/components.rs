//! Widgets shared by pages.

use crate::api::RevisionView;
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
