//! `trellis-proxy`: configured by `TRELLIS_*` environment variables (see `env.rs`).

use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("TRELLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let settings = trellis_proxy::Settings::from_env()?;
    // A sidecar shares its pod's CPU: one runtime thread unless told otherwise.
    let threads = settings.worker_threads;
    let runtime = match threads {
        // One thread: no work-stealing machinery to pay for.
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    runtime.block_on(async {
        let running = trellis_proxy::start(settings).await?;
        shutdown_signal().await;
        tracing::info!("draining");
        running.shutdown().await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
