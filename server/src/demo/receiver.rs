//! The demo's notification receiver: the reference Notifications name a Slack URL, a webhook URL
//! and its key by environment variable; unless the operator set real ones, the demo provides
//! its own receiver's and prints each notification as it arrives.

use http_body_util::BodyExt;

pub const SLACK_URL: &str = "TRELLIS_SLACK_WEBHOOK_URL";
pub const HOOK_URL: &str = "TRELLIS_HOOK_URL";
pub const HOOK_SECRET: &str = "TRELLIS_HOOK_SECRET";

/// Starts the receiver and provides the secrets the environment does not set; returns those,
/// for the environment of replicas started as processes.
pub async fn start() -> anyhow::Result<Vec<(String, String)>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener));
    let values = [
        (SLACK_URL, format!("http://{addr}/slack")),
        (HOOK_URL, format!("http://{addr}/hook")),
        (HOOK_SECRET, crate::auth::random_token()),
    ];
    let mut provided = Vec::new();
    for (name, value) in values {
        if std::env::var_os(name).is_none() {
            crate::secrets::provide(name, &value);
            provided.push((name.to_string(), value));
        }
    }
    Ok(provided)
}

async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let path = req.uri().path().to_string();
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let text = match path.as_str() {
                "/slack" => json["text"].as_str().unwrap_or_default().to_string(),
                _ => format!("{}: {}", json["event"].as_str().unwrap_or("?"), json["summary"].as_str().unwrap_or("")),
            };
            println!("  notified ({}) {text}", path.trim_start_matches('/'));
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
        });
        let io = hyper_util::rt::TokioIo::new(stream);
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, svc));
    }
}
