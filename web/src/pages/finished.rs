//! Finished rollouts, under the live ones on `/rollouts`: how each run ended and who ended it,
//! who acted on it, the canary's weight over time, and the commit that recorded it in git.
//! A record that only grows and never changes once drawn: the server renders it as markup,
//! sent with the live rollouts.

/// The finished runs as markup, or why they cannot be read.
#[cfg(feature = "ssr")]
pub fn markup(runs: Result<Vec<crate::api::RolloutRun>, String>) -> String {
    match runs {
        Ok(runs) => markup::finished(&runs),
        Err(e) => format!(r#"<h2>Finished rollouts</h2><p class="error">{}</p>"#, crate::components::escape(&e)),
    }
}

#[cfg(feature = "ssr")]
mod markup {
    use crate::api::{RolloutRun, format_time, short_sha};
    use crate::chart::Series;
    use crate::components::escape;
    use std::fmt::Write;

    pub fn finished(runs: &[RolloutRun]) -> String {
        let mut html = String::from("<h2>Finished rollouts</h2>");
        if runs.is_empty() {
            html.push_str(
                r#"<p class="muted" data-testid="finished-none">No rollout has ended yet: a run shows here once it completes or is aborted.</p>"#,
            );
            return html;
        }
        html.push_str(r#"<ul class="runs">"#);
        for run in runs {
            html.push_str(&item(run));
        }
        html.push_str("</ul>");
        html
    }

    fn item(run: &RolloutRun) -> String {
        let (name, outcome) = (escape(&run.name), escape(&run.outcome));
        let who = match run.by.as_str() {
            "trellis" => "by its analyses".to_string(),
            by => format!("by {}", escape(by)),
        };
        let mut html = format!(
            r#"<li class="run" data-testid="finished-{name}"><p><strong>{name}</strong> <span class="phase {outcome}">{outcome}</span> <span data-testid="finished-ended">{outcome} {who} at {}</span>"#,
            format_time(run.ended_at)
        );
        if let Some(service) = &run.service {
            let _ = write!(html, " · {}", escape(service));
        }
        if let Some(reason) = &run.reason {
            let _ = write!(html, r#" <span class="reason">({})</span>"#, escape(reason));
        }
        html.push_str("</p><p class=\"muted\">");
        if !run.operators.is_empty() {
            let _ = write!(html, "Operators who acted: {} · ", escape(&run.operators.join(", ")));
        }
        match (&run.commit, &run.branch) {
            (Some(sha), branch) => {
                let _ = write!(
                    html,
                    r#"recorded in git as <a href="/audit?revision={}" data-testid="finished-commit"><code>{}</code></a>{}"#,
                    escape(sha),
                    escape(&short_sha(sha)),
                    branch.as_ref().map(|b| format!(" on {}", escape(b))).unwrap_or_default()
                );
            }
            (None, _) => html.push_str("not recorded in git yet"),
        }
        html.push_str("</p>");
        if run.weights.len() > 1 {
            // A weight holds until the next change: drawn as steps, not slopes.
            let mut values = Vec::new();
            for (i, &(at, weight)) in run.weights.iter().enumerate() {
                if i > 0 {
                    values.push((at as u64, Some(f64::from(run.weights[i - 1].1))));
                }
                values.push((at as u64, Some(f64::from(weight))));
            }
            let series = [Series { label: "canary weight".into(), values, marks: Vec::new() }];
            let title = format!("{} canary weight over the run", run.name);
            html.push_str(&crate::chart::markup("finished-weights", &title, "%", &series, Some((0.0, 100.0))));
        }
        html.push_str("</li>");
        html
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_run_says_how_it_ended_who_acted_and_where_it_was_recorded() {
            let run = RolloutRun {
                name: "inventory-v2".into(),
                service: Some("inventory".into()),
                started_at: Some(0),
                ended_at: 120_000,
                outcome: "aborted".into(),
                by: "ops".into(),
                reason: Some("aborted by ops".into()),
                operators: vec!["ops".into()],
                weights: vec![(0, 20), (60_000, 80), (120_000, 0)],
                commit: Some("0123456789abcdef".into()),
                branch: Some("main".into()),
            };
            let html = finished(std::slice::from_ref(&run));
            assert!(html.contains("aborted by ops at 1970-01-01 00:02:00 UTC</span> · inventory"), "{html}");
            assert!(html.contains(r#"<a href="/audit?revision=0123456789abcdef" data-testid="finished-commit"><code>01234567</code></a> on main"#), "{html}");
            // Steps: 20 until 80, 80 until 0.
            assert!(html.contains("aria-label=\"inventory-v2 canary weight over the run. canary weight: latest 0.0 % (from 0.0 to 80.0)\""), "{html}");
            let by_analyses = finished(&[RolloutRun { by: "trellis".into(), commit: None, ..run }]);
            assert!(by_analyses.contains("aborted by its analyses") && by_analyses.contains("not recorded in git yet"));
            assert!(finished(&[]).contains("No rollout has ended yet"));
        }
    }
}
