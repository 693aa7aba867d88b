//! `/topology`: the service graph. Nodes show what each service received, edges what callers
//! sent and how it split across the callee's versions, coloured by success rate like Kiali.
//! What to look at lives in the address (`?window=60&focus=inventory&q=cat`), so a view can be
//! shared; the server draws the graph (see [`graph`]) and the page refetches it on each change.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[cfg(feature = "ssr")]
mod graph;

/// The graph for a window, a focus and a search, as markup.
#[server(prefix = "/api/v1/ui", endpoint = "topology")]
pub async fn get_topology(window: u64, focus: String, query: String) -> Result<String, ServerFnError> {
    let window = if [10, 60, 600].contains(&window) { window } else { 60 };
    let topology = expect_context::<crate::ssr::Backend>().0.topology(window);
    let focus = Some(focus).filter(|f| !f.is_empty());
    Ok(graph::markup(&topology, &graph::Lens { focus, query, window }))
}

#[component]
pub fn TopologyPage() -> impl IntoView {
    let tick = crate::live::live_tick();
    let query = use_query_map();
    let param = move |key: &str| query.with(|q| q.get(key)).unwrap_or_default();
    // A minute by default, as Kiali's graph, and the window of the Traffic page's figures:
    // the same service reads the same on both.
    let window = move || param("window").parse::<u64>().ok().filter(|w| [10, 60, 600].contains(w)).unwrap_or(60);
    let graph = Resource::new(
        move || (tick.get(), window(), param("focus"), param("q")),
        |(_, window, focus, q)| get_topology(window, focus, q),
    );
    // Links keep the focus and the search; a window is one more thing the address holds.
    let window_href = move |w: u64| {
        let (focus, q) = (param("focus"), param("q"));
        let mut href = format!("/topology?window={w}");
        if !focus.is_empty() {
            href += &format!("&focus={}", urlencode(&focus));
        }
        if !q.is_empty() {
            href += &format!("&q={}", urlencode(&q));
        }
        href
    };
    view! {
        <section class="card">
            <div class="toolbar">
                <h2>"Topology"</h2>
                {[(10, "10 s"), (60, "1 min"), (600, "10 min")]
                    .into_iter()
                    .map(|(w, label)| view! {
                        <a class="button" class:active=move || window() == w data-testid=format!("window-{w}") href=move || window_href(w)>{label}</a>
                    })
                    .collect_view()}
                <form method="get" action="/topology" role="search" class="search">
                    <input type="hidden" name="window" prop:value=move || window().to_string()/>
                    <input type="search" name="q" aria-label="Find a service" placeholder="Find a service" data-testid="topology-search" prop:value=move || param("q")/>
                    <button type="submit">"Find"</button>
                </form>
            </div>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || graph.get().map(|r| match r {
                    Ok(markup) => view! { <div class="graph" inner_html=markup></div> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

/// A query parameter's value: service names are DNS labels, but a search may hold anything.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
