//! `trellis-proxy`: configured by `TRELLIS_*` environment variables (see `env.rs`).

use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{}", trellis_proxy::env::help());
            return ExitCode::SUCCESS;
        }
        Some("--env-example") => {
            print!("{}", trellis_proxy::env::env_example());
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("trellis-proxy {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        // A container's health check: is the proxy at TRELLIS_ADMIN_ADDR ready?
        Some("--probe") => {
            let admin = std::env::var(trellis_proxy::env::ENV_ADMIN_ADDR).unwrap_or_else(|_| "127.0.0.1:4191".into());
            let probed =
                admin.parse().map_err(|e| format!("{admin:?}: {e}")).and_then(|a| trellis_host::probe(a, "/ready"));
            return match probed {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("trellis-proxy: not ready: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(other) => {
            eprintln!("trellis-proxy: unknown argument {other:?}: settings are environment variables (see --help)");
            return ExitCode::from(2);
        }
    }
    let filter = EnvFilter::try_from_env("TRELLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    match std::env::var("TRELLIS_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => tracing_subscriber::fmt().with_env_filter(filter).init(),
        // For log shippers: one object per line, an event's fields at the top level.
        Ok("json") => tracing_subscriber::fmt().json().flatten_event(true).with_env_filter(filter).init(),
        Ok(other) => {
            eprintln!("trellis-proxy: TRELLIS_LOG_FORMAT={other:?} must be text or json");
            return ExitCode::from(2);
        }
    }
    let settings = match trellis_proxy::Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("trellis-proxy: {e}\n(trellis-proxy --help lists every setting)");
            return ExitCode::from(2);
        }
    };
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        // One line of causes, never a backtrace: the message is for the operator.
        Err(e) => {
            eprintln!("trellis-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: trellis_proxy::Settings) -> anyhow::Result<()> {
    // A sidecar shares its pod's CPU: one runtime thread unless told otherwise.
    let runtime = match settings.worker_threads {
        // One thread: no work-stealing machinery to pay for.
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    runtime.block_on(async {
        let running = trellis_proxy::start(settings).await?;
        // systemd (Type=notify) hears it is ready when `/ready` would say so.
        let ready = async {
            while running.waiting_for().is_some() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            notify_systemd("READY=1");
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = ready => {}
            () = shutdown_signal() => {}
        }
        notify_systemd("STOPPING=1");
        tracing::info!("draining");
        running.shutdown().await;
        Ok(())
    })
}

/// Tells systemd how the proxy is doing, when a `Type=notify` unit started it.
fn notify_systemd(state: &str) {
    if let Err(e) = trellis_host::notify_systemd(state) {
        tracing::warn!(error = %e, "cannot tell systemd {state}");
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
