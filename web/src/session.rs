//! Signing in and out of the dashboard. A login exchanges a token for an HttpOnly session
//! cookie; every change the page makes carries the session's CSRF token as well, so a cookie
//! alone (a forged cross-site request) never changes anything.

use crate::api::SessionView;
use leptos::prelude::*;

#[server(prefix = "/api/v1/ui", endpoint = "session")]
pub async fn get_session() -> Result<SessionView, ServerFnError> {
    // The top bar is also rendered while the router collects its routes, with no request and
    // no backend: nobody is signed in then.
    let Some(backend) = use_context::<crate::ssr::Backend>() else { return Ok(SessionView::default()) };
    let headers: http::HeaderMap = leptos_axum::extract().await?;
    Ok(backend.0.session(&headers).await)
}

#[server(prefix = "/api/v1/ui", endpoint = "login")]
pub async fn login(token: String) -> Result<SessionView, ServerFnError> {
    let backend = expect_context::<crate::ssr::Backend>();
    let response = expect_context::<leptos_axum::ResponseOptions>();
    let axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr> =
        leptos_axum::extract().await?;
    match backend.0.login(token.trim(), client.ip()).await {
        Ok((session, cookie)) => {
            if let Ok(value) = http::HeaderValue::from_str(&cookie) {
                response.insert_header(http::header::SET_COOKIE, value);
            }
            Ok(session)
        }
        Err((status, why)) => {
            response.set_status(http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::UNAUTHORIZED));
            Err(ServerFnError::new(why))
        }
    }
}

#[server(prefix = "/api/v1/ui", endpoint = "logout")]
pub async fn logout(csrf: String) -> Result<(), ServerFnError> {
    let headers: http::HeaderMap = leptos_axum::extract().await?;
    let backend = expect_context::<crate::ssr::Backend>();
    if backend.0.session(&headers).await.csrf.as_deref() != Some(csrf.as_str()) {
        return Err(ServerFnError::new("missing or wrong CSRF token for this session"));
    }
    backend.0.logout(&headers).await;
    let expired = "trellis_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0";
    expect_context::<leptos_axum::ResponseOptions>()
        .insert_header(http::header::SET_COOKIE, http::HeaderValue::from_static(expired));
    Ok(())
}

/// A server function's error as a person should read it, without the framework's prefix.
pub fn error_text(e: &ServerFnError) -> String {
    let text = e.to_string();
    text.strip_prefix("error running server function: ").unwrap_or(&text).to_string()
}

/// The session, loaded on the server with the page (a login or logout reloads the page).
pub fn session_resource() -> Resource<Result<SessionView, ServerFnError>> {
    Resource::new(|| (), |_| get_session())
}

/// The top bar's corner: who is signed in, with a way out, or a way in.
#[component]
pub fn SessionBadge() -> impl IntoView {
    let session = session_resource();
    let out = ServerAction::<Logout>::new();
    Effect::new(move |_| {
        if out.value().get().is_some_and(|r| r.is_ok()) {
            go("/");
        }
    });
    view! {
        <Transition fallback=|| ()>
            {move || session.get().map(|s| match s {
                Ok(SessionView { user: Some(user), operator, csrf }) => {
                    let role = if operator { "operator" } else { "viewer" };
                    let csrf = csrf.unwrap_or_default();
                    view! {
                        <span class="session" data-testid="session-user">{user} " (" {role} ")"</span>
                        <button class="link" data-testid="logout"
                            on:click=move |_| { out.dispatch(Logout { csrf: csrf.clone() }); }>"Log out"</button>
                    }.into_any()
                }
                _ => view! { <a href="/login" data-testid="login-link">"Log in"</a> }.into_any(),
            })}
        </Transition>
    }
}

/// The request's headers as an operator's change from the page presents them: its session
/// cookie with the CSRF token the page holds, and never a token a proxy in front might add.
#[cfg(feature = "ssr")]
pub async fn acting_headers(csrf: &str) -> Result<http::HeaderMap, ServerFnError> {
    let mut headers: http::HeaderMap = leptos_axum::extract().await?;
    headers.remove(http::header::AUTHORIZATION);
    if let Ok(v) = http::HeaderValue::from_str(csrf) {
        headers.insert("x-csrf-token", v);
    }
    Ok(headers)
}

/// A refusal from the control plane, with its HTTP status on the response.
#[cfg(feature = "ssr")]
pub fn refused((status, message): (u16, String)) -> ServerFnError {
    if let Ok(status) = http::StatusCode::from_u16(status) {
        expect_context::<leptos_axum::ResponseOptions>().set_status(status);
    }
    ServerFnError::new(message)
}

/// A full page load of `path`, so every part of the page (the top bar too) sees the session.
pub fn go(path: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(w) = web_sys::window() {
        let _ = w.location().set_href(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}
