//! A demo service. `storefront` calls `catalog` and `inventory` through its sidecar's outbound
//! listener, naming them in `Host` as any meshed application would; the others answer with
//! who they are, so a response shows which version served it. `/fail` answers 500.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug)]
pub struct AppArgs {
    #[arg(long)]
    pub service: String,
    #[arg(long)]
    pub version: String,
    #[arg(long)]
    pub listen: SocketAddr,
    /// The local sidecar's outbound listener, for services that call others.
    #[arg(long)]
    pub outbound: Option<SocketAddr>,
}

struct App {
    args: AppArgs,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Serves until the process ends.
pub async fn run(args: AppArgs) -> anyhow::Result<()> {
    let (_, task) = start(args).await?;
    task.await?;
    Ok(())
}

/// Binds and serves in the background; returns the bound address.
pub async fn start(args: AppArgs) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App { args, client: Client::builder(TokioExecutor::new()).build_http() });
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let app = app.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok((addr, task))
}

impl App {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let me = json!({ "service": self.args.service, "version": self.args.version, "path": req.uri().path() });
        // Ways to make errors on purpose, to watch success rates, ejection and rollouts react:
        // `/fail`, or the load generator naming this version in its fail header.
        let fail = req.headers().get(super::load::FAIL_HEADER).cloned();
        if req.uri().path() == "/fail" || fail.as_ref().is_some_and(|v| v.as_bytes() == self.args.version.as_bytes()) {
            return respond(StatusCode::INTERNAL_SERVER_ERROR, me);
        }
        if self.args.service != "storefront" {
            return respond(StatusCode::OK, me);
        }
        let (catalog, inventory) = tokio::join!(
            self.call("catalog", "/items", fail.as_ref()),
            self.call("inventory", "/stock", fail.as_ref())
        );
        let status = if catalog.is_ok() && inventory.is_ok() { StatusCode::OK } else { StatusCode::BAD_GATEWAY };
        let show = |r: Result<Value, String>| r.unwrap_or_else(|e| json!({ "error": e }));
        respond(status, json!({ "storefront": me, "catalog": show(catalog), "inventory": show(inventory) }))
    }

    async fn call(&self, service: &str, path: &str, fail: Option<&http::HeaderValue>) -> Result<Value, String> {
        let outbound = self.args.outbound.ok_or("no sidecar configured")?;
        let mut req = Request::get(format!("http://{outbound}{path}")).header(http::header::HOST, service);
        if let Some(v) = fail {
            req = req.header(super::load::FAIL_HEADER, v);
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!("{service} answered {status}: {}", String::from_utf8_lossy(&body).trim()));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}
