//! The HTML shell, router and navigation.

use crate::pages::audit::AuditPage;
use crate::pages::fleet::FleetPage;
use crate::pages::login::LoginPage;
use crate::pages::overview::OverviewPage;
use crate::pages::policy::PolicyPage;
use crate::pages::rollouts::RolloutsPage;
use crate::pages::topology::TopologyPage;
use crate::pages::traffic::TrafficPage;
use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

/// The document around the app; rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                // No favicon file to serve: an empty data URL spares the browser a 404.
                <link rel="icon" href="data:,"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The page's Content-Security-Policy, with this response's nonce: only the scripts the server
/// wrote (hydration, resolved resources; leptos puts the nonce on each) and the bundle from
/// `/pkg` run, WebAssembly may compile, nothing loads from elsewhere, and no site may frame
/// the dashboard (its buttons act on rollouts). Inline `style` attributes are allowed: the
/// version bars size themselves with one.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="trellis" href="/pkg/trellis.css"/>
        <Title text="Trellis"/>
        <Router>
            <header class="topbar">
                <span class="brand">"Trellis"</span>
                <nav>
                    <A href="/">"Overview"</A>
                    <A href="/topology">"Topology"</A>
                    <A href="/traffic">"Traffic"</A>
                    <A href="/fleet">"Fleet"</A>
                    <A href="/rollouts">"Rollouts"</A>
                    <A href="/policy">"Policy"</A>
                    <A href="/audit">"Audit"</A>
                </nav>
                <span class="spacer"></span>
                <crate::session::SessionBadge/>
            </header>
            <main>
                <Routes fallback=|| view! { <p data-testid="not-found">"Page not found."</p> }>
                    <Route path=path!("/") view=OverviewPage/>
                    <Route path=path!("/policy") view=PolicyPage/>
                    <Route path=path!("/topology") view=TopologyPage/>
                    <Route path=path!("/traffic") view=TrafficPage/>
                    <Route path=path!("/fleet") view=FleetPage/>
                    <Route path=path!("/rollouts") view=RolloutsPage/>
                    <Route path=path!("/login") view=LoginPage/>
                    <Route path=path!("/audit") view=AuditPage/>
                </Routes>
            </main>
        </Router>
    }
}
