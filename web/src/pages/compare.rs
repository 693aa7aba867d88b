//! Two revisions compared on the Policy page (`/policy?from=A&to=B`): what going from A to B
//! does to traffic, in the words of `trellis diff`, and every file that differs, side by side.
//! It is static once drawn and can run to thousands of lines, so the server renders it as
//! markup: the browser neither downloads code to draw it nor hydrates it row by row.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The comparison as markup, ready for the page.
#[server(prefix = "/api/v1/ui", endpoint = "compare")]
pub async fn compare_revisions(from: String, to: String) -> Result<String, ServerFnError> {
    let backend = expect_context::<crate::ssr::Backend>();
    backend.0.compare(&from, &to).await.map(|c| markup::comparison(&c)).map_err(ServerFnError::new)
}

/// The comparison asked for in the address, when there is one.
#[component]
pub fn ComparisonCard() -> impl IntoView {
    let query = use_query_map();
    let pair = move || query.with(|q| Some((q.get("from")?, q.get("to")?)));
    let comparison = Resource::new(pair, |pair| async move {
        match pair {
            Some((from, to)) => Some(compare_revisions(from, to).await),
            None => None,
        }
    });
    view! {
        <Transition fallback=|| ()>
            {move || comparison.get().flatten().map(|result| match result {
                Ok(html) => view! { <section class="card" data-testid="comparison" inner_html=html></section> }.into_any(),
                Err(e) => view! { <p class="card error" data-testid="compare-error">{crate::session::error_text(&e)}</p> }.into_any(),
            })}
        </Transition>
    }
}

#[cfg(feature = "ssr")]
mod markup {
    use crate::api::{Comparison, DiffRow, FileDiff};
    use crate::components::escape;
    use std::fmt::Write;

    /// The card's contents: heading, the traffic changes, then each file.
    pub fn comparison(c: &Comparison) -> String {
        let (old, new) = (c.from.short(), c.to.short());
        let mut html = format!(
            r#"<h2>{} → {}</h2><p class="muted">{} → {}</p><h3>What it does to traffic</h3>"#,
            escape(&old),
            escape(&new),
            escape(c.from.subject()),
            escape(c.to.subject())
        );
        match &c.changes {
            Some(changes) if changes.is_empty() => {
                html.push_str(r#"<p class="muted" data-testid="changes">No change to traffic.</p>"#)
            }
            Some(changes) => {
                html.push_str(r#"<ul class="changes" data-testid="changes">"#);
                for change in changes {
                    let _ = write!(html, "<li>{}</li>", escape(&change.text));
                }
                html.push_str("</ul>");
            }
            None => html.push_str(
                r#"<p class="muted" data-testid="changes">One side is not a valid policy (it was rejected): only its files compare.</p>"#,
            ),
        }
        let _ = write!(html, "<h3>Files that differ ({})</h3>", c.files.len());
        if c.files.is_empty() {
            html.push_str(r#"<p class="muted">The two revisions hold the same files.</p>"#);
        }
        for file in &c.files {
            html.push_str(&side_by_side(file, &old, &new));
        }
        html
    }

    fn side_by_side(file: &FileDiff, old: &str, new: &str) -> String {
        let (path, status) = (escape(&file.path), escape(&file.status));
        format!(
            r#"<details class="file-diff" open data-testid="diff-file"><summary><code>{path}</code> <span class="status {status}">{status}</span></summary><table class="side-by-side"><caption class="visually-hidden">{path} at {old} (left) and {new} (right)</caption><thead><tr><th scope="col" colspan="2">{old}</th><th scope="col" colspan="2">{new}</th></tr></thead><tbody>{}</tbody></table></details>"#,
            rows(&file.rows),
            old = escape(old),
            new = escape(new),
        )
    }

    fn rows(rows: &[DiffRow]) -> String {
        let cell = |n: Option<u32>, text: &str, class: &str| {
            let n = n.map(|n| n.to_string()).unwrap_or_default();
            format!(r#"<td class="n">{n}</td><td class="text{class}">{}</td>"#, escape(text))
        };
        rows.iter()
            .map(|row| match row {
                DiffRow::Same { old, new, text } => {
                    format!("<tr>{}{}</tr>", cell(Some(*old), text, ""), cell(Some(*new), text, ""))
                }
                DiffRow::Removed { old, text } => {
                    format!(r#"<tr class="removed">{}{}</tr>"#, cell(Some(*old), text, " del"), cell(None, "", ""))
                }
                DiffRow::Added { new, text } => {
                    format!(r#"<tr class="added">{}{}</tr>"#, cell(None, "", ""), cell(Some(*new), text, " ins"))
                }
                DiffRow::Changed { old, new, old_text, new_text } => format!(
                    r#"<tr class="changed">{}{}</tr>"#,
                    cell(Some(*old), old_text, " del"),
                    cell(Some(*new), new_text, " ins")
                ),
                DiffRow::Gap { lines } => {
                    let s = if *lines == 1 { "" } else { "s" };
                    format!(r#"<tr class="gap"><td colspan="4">⋯ {lines} unchanged line{s}</td></tr>"#)
                }
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::api::RevisionView;
        use trellis_model::diff::{Change, ChangeKind};

        fn revision(sha: &str, message: &str) -> RevisionView {
            RevisionView {
                sha: sha.into(),
                author: "ann".into(),
                message: message.into(),
                committed_at: 0,
                outcome: "applied".into(),
                errors: Vec::new(),
                changes: Vec::new(),
            }
        }

        #[test]
        fn rows_are_escaped_and_numbered_on_their_side() {
            let rows = rows(&[
                DiffRow::Changed { old: 3, new: 3, old_text: "a: <b>".into(), new_text: "a: c".into() },
                DiffRow::Added { new: 4, text: "d".into() },
                DiffRow::Gap { lines: 1 },
            ]);
            let changed = r#"<tr class="changed"><td class="n">3</td><td class="text del">a: &lt;b&gt;</td>"#;
            assert!(rows.starts_with(changed), "{rows}");
            let added = r#"<tr class="added"><td class="n"></td><td class="text"></td><td class="n">4</td><td class="text ins">d</td></tr>"#;
            assert!(rows.contains(added), "{rows}");
            assert!(rows.ends_with("⋯ 1 unchanged line</td></tr>"), "{rows}");
        }

        #[test]
        fn the_card_says_what_changes_and_when_it_cannot() {
            let mut c = Comparison {
                from: revision("1111111122", "Half <to> v2\n\nbody"),
                to: revision("2222222233", "Tenth"),
                changes: Some(vec![Change {
                    service: Some("inventory".into()),
                    kind: ChangeKind::Traffic,
                    text: "inventory: 40% moves from v2 to v1".into(),
                }]),
                files: Vec::new(),
            };
            let html = comparison(&c);
            assert!(
                html.starts_with("<h2>11111111 → 22222222</h2><p class=\"muted\">Half &lt;to&gt; v2 → Tenth</p>"),
                "{html}"
            );
            assert!(html.contains("<li>inventory: 40% moves from v2 to v1</li>"), "{html}");
            assert!(html.contains("The two revisions hold the same files."), "{html}");
            c.changes = None;
            assert!(comparison(&c).contains("only its files compare"));
        }
    }
}
