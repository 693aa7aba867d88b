//! `trellis install kubernetes`: manifests for a cluster (see [`kubernetes`]).
//!
//! `trellis install systemd`: the units for a host without Kubernetes. The control plane as
//! `trellis.service`, and a proxy per service as `trellis-proxy@SERVICE.service` reading
//! `/etc/trellis/proxy/SERVICE.env`; both `Type=notify` (ready once serving), restarted on
//! failure, and hardened so that `systemd-analyze security` rates them "OK" (exposure under
//! 2): no capabilities, a dynamic user, a read-only system, the system calls a network
//! service makes. The control plane's settings file is written from its own flags, so the
//! two cannot drift.

use clap::CommandFactory;
use std::path::{Path, PathBuf};

pub mod kubernetes;

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    #[command(subcommand)]
    pub target: Target,
}

#[derive(clap::Subcommand, Debug)]
pub enum Target {
    /// Manifests for a cluster, for `kubectl apply -f -`: the namespace, the control plane's
    /// replicas on Postgres with their disruption budget, Services, a NetworkPolicy, the mesh's
    /// trust anchor and the sidecar injector's webhook configuration.
    Kubernetes(kubernetes::KubernetesArgs),
    /// systemd units for the control plane and a proxy per service, and the control plane's
    /// settings file (`trellis.env.example`).
    Systemd {
        /// Where `trellis` and `trellis-proxy` are installed.
        #[arg(long, default_value = "/usr/local/bin")]
        bin_dir: PathBuf,
        /// Write the files into this directory (e.g. /etc/systemd/system) instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: InstallArgs) -> anyhow::Result<i32> {
    let (bin_dir, out) = match args.target {
        Target::Kubernetes(k) => {
            let made;
            let dir = match &k.identity_dir {
                Some(dir) => dir.clone(),
                None => {
                    made = tempfile::tempdir()?;
                    eprintln!(
                        "trellis: a new trust anchor was made for these manifests; keep it with --identity-dir DIR \
                         to print them again for the same mesh"
                    );
                    made.path().to_path_buf()
                }
            };
            let anchor = kubernetes::Anchor::load_or_create(&dir, &k.trust_domain)?;
            print!("{}", kubernetes::yaml(&kubernetes::manifests(&k, &anchor)));
            return Ok(0);
        }
        Target::Systemd { bin_dir, out } => (bin_dir, out),
    };
    let files = systemd(&bin_dir);
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            for (name, text) in &files {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        None => {
            for (name, text) in &files {
                println!("# ---- {name}\n{text}");
            }
        }
    }
    Ok(0)
}

/// What every unit shares: restarts, limits and the sandbox.
const HARDENING: &str = "\
Restart=on-failure
RestartSec=2s
TimeoutStopSec=30s
# Many proxies, many connections.
LimitNOFILE=65536
UMask=0077
DynamicUser=yes
NoNewPrivileges=yes
# No capabilities: listen on ports from 1024 (for 443, add CAP_NET_BIND_SERVICE to both).
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
DevicePolicy=closed
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
";

/// The unit files and the control plane's settings file, by name.
pub fn systemd(bin_dir: &Path) -> Vec<(&'static str, String)> {
    let bin = bin_dir.display();
    let control_plane = format!(
        "[Unit]
Description=Trellis control plane (API, dashboard, fleet)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={bin}/trellis serve
# TRELLIS_REPO and the rest: see trellis.env.example (trellis serve --help says the same).
EnvironmentFile=/etc/trellis/trellis.env
Environment=TRELLIS_DATA_DIR=%S/trellis
StateDirectory=trellis
{HARDENING}
[Install]
WantedBy=multi-user.target
"
    );
    let proxy = format!(
        "[Unit]
Description=Trellis sidecar proxy for %i
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={bin}/trellis-proxy
# TRELLIS_SERVICE, TRELLIS_VERSION, TRELLIS_CONTROL_PLANE_URL, TRELLIS_JOIN_TOKEN, ...:
# trellis-proxy --env-example > /etc/trellis/proxy/%i.env, then fill it in.
EnvironmentFile=/etc/trellis/proxy/%i.env
{HARDENING}# The proxy batches socket writes through io_uring.
SystemCallFilter=io_uring_setup io_uring_enter io_uring_register

[Install]
WantedBy=multi-user.target
"
    );
    vec![("trellis.service", control_plane), ("trellis-proxy@.service", proxy), ("trellis.env.example", env_example())]
}

/// `trellis serve`'s settings as an environment file, from its flags: each variable with its
/// help and default, commented out.
fn env_example() -> String {
    let mut out = String::from(
        "# /etc/trellis/trellis.env: the control plane's settings (trellis serve --help).\n\
         # TRELLIS_DATA_DIR is set by the unit (/var/lib/trellis).\n",
    );
    let command = crate::cli::Cli::command();
    let Some(serve) = command.find_subcommand("serve") else { return out };
    for arg in serve.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else { continue };
        if env == "TRELLIS_DATA_DIR" {
            continue;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let default = arg.get_default_values().first().and_then(|v| v.to_str()).unwrap_or_default();
        out.push('\n');
        for line in help.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        let required = arg.is_required_set();
        out.push_str(&format!("{}{env}={default}\n", if required { "" } else { "#" }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_file_lists_every_setting_of_serve() {
        let env = env_example();
        for needle in
            ["\nTRELLIS_REPO=\n", "#TRELLIS_LISTEN=127.0.0.1:8080\n", "#TRELLIS_TLS_CERT=\n", "#DATABASE_URL=\n"]
        {
            assert!(env.contains(needle), "{needle:?} missing from\n{env}");
        }
        assert!(!env.contains("TRELLIS_DATA_DIR="), "the unit sets it");
    }
}
