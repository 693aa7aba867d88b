//! The Trellis dashboard: a Leptos app rendered on the server (feature `ssr`, hosted by the
//! control plane) and hydrated in the browser (feature `hydrate`, built to wasm).
//!
//! # Layout
//! - [`app`]: the HTML shell, router and navigation.
//! - [`api`]: the data the pages show, shared by the server functions and the REST API.
//! - [`pages`]: one module per page.
//! - [`components`]: widgets shared by pages; [`chart`]: readable time charts.
//! - [`live`]: browser-side subscription to the control plane's event stream.
//! - [`session`]: logging in and out, and who the page is talking to.
//! - `ssr`: the server-side hook through which the control plane supplies data.

#![forbid(unsafe_code)]
// Leptos views are deeply nested types; the default limit is too low for a whole page.
#![recursion_limit = "256"]

/// The API's shapes, from the crate the control plane shares.
pub use trellis_api as api;
pub mod app;
pub mod chart;
pub mod components;
pub mod live;
pub mod pages;
pub mod session;
#[cfg(feature = "ssr")]
pub mod ssr;

pub use app::{App, shell};

/// The wasm entry point: attaches the reactive system to the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
    // Lets browser tests (and people) tell a live page from a static one.
    if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
