//! `trellis rollout`: the rollouts of a running control plane, and the operator's actions on
//! them, through the same `/api/v1` the dashboard uses.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use trellis_api::{RolloutView, RolloutsView};

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
    /// The control plane's address.
    #[arg(long, global = true, env = "TRELLIS_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An operator's token (needed for every command but `list`).
    #[arg(long, global = true, env = "TRELLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum RolloutCommand {
    /// Every rollout: phase, step and weights.
    List,
    /// Pass the current gate or pause: go to the next step.
    Promote { name: String },
    /// Skip the remaining steps: all traffic to the canary now.
    PromoteFull { name: String },
    /// Hold the rollout where it is.
    Pause { name: String },
    /// Continue a paused rollout.
    Resume { name: String },
    /// Send all traffic back to stable now.
    Abort { name: String },
}

/// Exit codes: 0 done, 1 refused by the control plane, 2 could not ask.
pub async fn run(args: RolloutArgs) -> anyhow::Result<i32> {
    let (action, name) = match &args.command {
        RolloutCommand::List => {
            return Ok(match call(&args, http::Method::GET, "/api/v1/rollouts").await {
                Ok(body) => match serde_json::from_slice::<RolloutsView>(&body) {
                    Ok(list) if list.items.is_empty() => {
                        println!("no rollouts in the applied revision");
                        0
                    }
                    Ok(list) => {
                        list.items.iter().for_each(|r| println!("{}", line(r)));
                        0
                    }
                    Err(e) => fail(2, &format!("unexpected answer from {}: {e}", args.server)),
                },
                Err((code, message)) => fail(code, &message),
            });
        }
        RolloutCommand::Promote { name } => ("promote", name),
        RolloutCommand::PromoteFull { name } => ("promote-full", name),
        RolloutCommand::Pause { name } => ("pause", name),
        RolloutCommand::Resume { name } => ("resume", name),
        RolloutCommand::Abort { name } => ("abort", name),
    };
    let path = format!("/api/v1/rollouts/{name}/{action}");
    Ok(match call(&args, http::Method::POST, &path).await {
        Ok(body) => match serde_json::from_slice::<RolloutView>(&body) {
            Ok(r) => {
                println!("{}", line(&r));
                0
            }
            Err(e) => fail(2, &format!("unexpected answer from {}: {e}", args.server)),
        },
        Err((code, message)) => fail(code, &message),
    })
}

fn line(r: &RolloutView) -> String {
    let step = if r.steps.is_empty() { String::new() } else { format!(" step {} of {}", r.step + 1, r.steps.len()) };
    let reason = r.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
    format!(
        "{}: {} {}{step}, {} {}% / {} {}%{reason}",
        r.name,
        r.service,
        r.phase,
        r.stable,
        100 - r.canary_weight,
        r.canary,
        r.canary_weight
    )
}

fn fail(code: i32, message: &str) -> i32 {
    eprintln!("error: {message}");
    code
}

/// The body of a successful answer, or an exit code and the control plane's own message.
async fn call(args: &RolloutArgs, method: http::Method, path: &str) -> Result<Bytes, (i32, String)> {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let mut req = http::Request::builder().method(method).uri(&url);
    if let Some(token) = &args.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::default()).map_err(|e| (2, format!("bad server address {url:?}: {e}")))?;
    let resp = client.request(req).await.map_err(|e| (2, format!("cannot reach {}: {e}", args.server)))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| (2, e.to_string()))?.to_bytes();
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Err((1, format!("{status}: {message}")))
}
