//! `trellis revert REV`: go back to an earlier revision's policy with a commit, through the
//! running control plane (the same action as the Policy page's "Revert to this").

use super::client::{ControlPlane, fail};
use trellis_api::{Reverted, short_sha};

#[derive(clap::Args, Debug)]
pub struct RevertArgs {
    /// The revision whose policy to restore: its SHA or a prefix (at least 4 hex digits), as
    /// `trellis` and the Policy page list them.
    pub rev: String,
    #[command(flatten)]
    pub control_plane: ControlPlane,
}

/// Exit codes: 0 committed, 1 refused by the control plane, 2 could not ask.
pub async fn run(args: RevertArgs) -> i32 {
    let path = format!("/api/v1/revisions/{}/revert", args.rev);
    match args.control_plane.call(http::Method::POST, &path).await {
        Ok(body) => match serde_json::from_slice::<Reverted>(&body) {
            Ok(r) => {
                let (to, sha) = (short_sha(&r.to), short_sha(&r.sha));
                if r.watched {
                    println!("reverted to {to}: commit {sha} on {}; the control plane applies it next", r.branch);
                } else {
                    println!("reverted to {to}: commit {sha} on branch {}; open a pull request to merge it", r.branch);
                }
                0
            }
            Err(e) => fail(2, &format!("unexpected answer from {}: {e}", args.control_plane.server)),
        },
        Err((code, message)) => fail(code, &message),
    }
}
