//! Live updates: the browser subscribes to `/api/v1/events` and pages refetch on each event.

/// Calls `on_event` for every message of the control plane's event stream. The browser's
/// EventSource reconnects by itself after a control-plane restart.
#[cfg(feature = "hydrate")]
pub fn subscribe(on_event: impl Fn() + 'static) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    let Ok(source) = web_sys::EventSource::new("/api/v1/events") else { return };
    let handler = Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |_| on_event());
    source.set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The page lives as long as the tab: keep the listener and the connection alive.
    handler.forget();
    std::mem::forget(source);
}

#[cfg(not(feature = "hydrate"))]
pub fn subscribe(_on_event: impl Fn() + 'static) {}

/// A resource that loads on the server, hydrates, then refetches whenever the control plane
/// reports a change.
pub fn live_resource<T, Fut>(fetch: fn() -> Fut) -> leptos::prelude::Resource<T>
where
    T: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    use leptos::prelude::*;
    let tick = live_tick();
    Resource::new(move || tick.get(), move |_| fetch())
}

/// A counter that moves on every event of the control plane's stream (in the browser only).
pub fn live_tick() -> leptos::prelude::ReadSignal<u64> {
    use leptos::prelude::*;
    let (tick, set_tick) = signal(0u64);
    // Effects run only in the browser.
    Effect::new(move |_| {
        subscribe(move || {
            set_tick.try_update(|t| *t += 1);
        })
    });
    tick
}
