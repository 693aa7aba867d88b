//! `/login`: an operator or viewer token in, a session cookie out.

use crate::session::Login;
use leptos::prelude::*;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    Effect::new(move |_| {
        if login.value().get().is_some_and(|r| r.is_ok()) {
            crate::session::go("/rollouts");
        }
    });
    let error = move || {
        login.value().get().and_then(|r| r.err()).map(|e| {
            view! { <p class="error" data-testid="login-error">{crate::session::error_text(&e)}</p> }
        })
    };
    view! {
        <section class="card login">
            <h2>"Log in"</h2>
            <p class="muted">
                "Anyone can look. Promoting or aborting a rollout needs an operator's token "
                "(the demo prints one at start; a server takes them from TRELLIS_TOKENS)."
            </p>
            <ActionForm action=login>
                <label>"Token " <input type="password" name="token" autocomplete="current-password" data-testid="login-token"/></label>
                " "
                <button type="submit" data-testid="login-submit">"Log in"</button>
            </ActionForm>
            {error}
        </section>
    }
}
