//! `trellis check`: is the mesh healthy? The control plane's checks, grouped, each √, ‼ or ×
//! with a hint; exit 1 when any fails (a control plane that does not answer is a failure).

use crate::health::{Check, Report, Status};
use http_body_util::BodyExt;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The control plane's address.
    #[arg(long, env = "TRELLIS_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A PEM file of the CA that signed an https:// control plane's certificate, when the
    /// system does not trust it already.
    #[arg(long, env = crate::https::CA_ENV)]
    pub control_plane_ca: Option<std::path::PathBuf>,
    #[arg(long, default_value = "human", value_parser = ["human", "json"])]
    pub output: String,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let report = match fetch(&args.server, args.control_plane_ca.as_deref()).await {
        Ok(report) => report,
        Err(why) => Report {
            ok: false,
            checks: vec![Check {
                group: "control plane".into(),
                name: "the API answers".into(),
                status: Status::Fail,
                detail: why,
                hint: Some("is `trellis serve` running there? pass --server or TRELLIS_SERVER".into()),
            }],
        },
    };
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn human(report: &Report) -> String {
    let mut out = String::new();
    let mut group = "";
    for c in &report.checks {
        if c.group != group {
            group = &c.group;
            out += &format!("{}{group}\n{}\n", if out.is_empty() { "" } else { "\n" }, "-".repeat(group.len()));
        }
        let mark = match c.status {
            Status::Ok => "√",
            Status::Warn => "‼",
            Status::Fail => "×",
        };
        out += &format!("{mark} {}: {}\n", c.name, c.detail);
        if let Some(hint) = &c.hint {
            out += &format!("    hint: {hint}\n");
        }
    }
    let (fails, warns) = (
        report.checks.iter().filter(|c| c.status == Status::Fail).count(),
        report.checks.iter().filter(|c| c.status == Status::Warn).count(),
    );
    out += &match (fails, warns) {
        (0, 0) => "\nStatus check results are √\n".to_string(),
        (0, w) => format!("\nStatus check results are √ with {w} warning(s)\n"),
        (f, _) => format!("\nStatus check results are × ({f} failed)\n"),
    };
    out
}

async fn fetch(server: &str, ca: Option<&std::path::Path>) -> Result<Report, String> {
    let client = crate::https::client(ca)?;
    let url = format!("{}/api/v1/health", server.trim_end_matches('/'));
    let uri: http::Uri = url.parse().map_err(|e| format!("bad address {url:?}: {e}"))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| format!("{server} did not answer within 10 s"))?
        .map_err(|e| format!("cannot reach {server}: {}", crate::https::with_causes(&e)))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("{server} answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{server} is not a Trellis control plane: {e}"))
}
