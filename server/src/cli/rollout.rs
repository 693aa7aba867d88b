//! `trellis rollout`: the rollouts of a running control plane, and the operator's actions on
//! them, through the same `/api/v1` the dashboard uses.

use super::client::{ControlPlane, fail};
use trellis_api::{RolloutView, RolloutsView};

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
    #[command(flatten)]
    pub control_plane: ControlPlane,
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
            return Ok(match args.control_plane.call(http::Method::GET, "/api/v1/rollouts").await {
                Ok(body) => match serde_json::from_slice::<RolloutsView>(&body) {
                    Ok(list) if list.items.is_empty() => {
                        println!("no rollouts in the applied revision");
                        0
                    }
                    Ok(list) => {
                        list.items.iter().for_each(|r| println!("{}", line(r)));
                        0
                    }
                    Err(e) => fail(2, &format!("unexpected answer from {}: {e}", args.control_plane.server)),
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
    Ok(match args.control_plane.call(http::Method::POST, &path).await {
        Ok(body) => match serde_json::from_slice::<RolloutView>(&body) {
            Ok(r) => {
                println!("{}", line(&r));
                0
            }
            Err(e) => fail(2, &format!("unexpected answer from {}: {e}", args.control_plane.server)),
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
