//! `openloop`: sends requests at a fixed rate whatever the server does, and measures each
//! latency from when the request *should* have been sent. A closed-loop tool (wrk) waits for a
//! response before sending the next request, so a stall hides the requests that would have
//! queued behind it ("coordinated omission"); this one does not.
//!
//! Prints one JSON object: rate asked and achieved, errors, and p50/p99/p99.9/max in µs.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// host:port to send to.
    #[arg(long)]
    target: String,
    /// The Host header (the service name when the target is a proxy).
    #[arg(long, default_value = "bench")]
    host: String,
    /// Requests per second.
    #[arg(long)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One thread: the generator is pinned to one core by the bench script.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let total = args.rate * args.duration;
    let interval = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let (tx, rx) = tokio::sync::mpsc::channel::<Instant>(total as usize + 1);
    let rx = Arc::new(Mutex::new(rx));
    let histogram = Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    // The requests due in the run's last tenth, apart: when the server (or the machine under
    // it) falls behind the rate, their latency grows until the end instead of settling.
    let last = Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let start = Instant::now();
    let last_from = start + Duration::from_secs(args.duration) * 9 / 10;
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let (rx, histogram, last, errors, target, host) =
            (rx.clone(), histogram.clone(), last.clone(), errors.clone(), args.target.clone(), args.host.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = None;
            loop {
                let Some(intended) = rx.lock().await.recv().await else { return };
                let ok = send(&mut conn, &target, &host).await;
                let micros = intended.elapsed().as_micros() as u64;
                if ok {
                    let _ = histogram.lock().unwrap().record(micros.max(1));
                    if intended >= last_from {
                        let _ = last.lock().unwrap().record(micros.max(1));
                    }
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    conn = None;
                }
            }
        }));
    }
    for i in 0..total {
        let due = start + interval * i as u32;
        pace(due).await;
        // Latency counts from `due`, not from when a connection was free to send.
        tx.send(due).await?;
    }
    drop(tx);
    for w in workers {
        w.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = histogram.lock().unwrap();
    let report = serde_json::json!({
        "rate": args.rate,
        "achieved": h.len() as f64 / elapsed,
        "requests": h.len(),
        "errors": errors.load(std::sync::atomic::Ordering::Relaxed),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "last_tenth_p50_us": last.lock().unwrap().value_at_quantile(0.5),
    });
    println!("{report}");
    Ok(())
}

/// Waits until `due` to within microseconds. Tokio's timer fires on millisecond ticks, which
/// would send a tick's worth of requests in one burst and add up to a millisecond to every
/// latency: more than the proxy under test adds. So the last stretch spins, yielding to the
/// connections (each yield polls the socket driver); the generator has its core to itself.
async fn pace(due: Instant) {
    const SPIN: Duration = Duration::from_millis(2);
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        if due - now > SPIN {
            tokio::time::sleep_until((due - SPIN).into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One request on this worker's keep-alive connection, opening it when needed.
async fn send(conn: &mut Option<Conn>, target: &str, host: &str) -> bool {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let Ok(stream) = tokio::net::TcpStream::connect(target).await else { return false };
        let _ = stream.set_nodelay(true);
        let Ok((sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
            return false;
        };
        tokio::spawn(connection);
        *conn = Some(sender);
    }
    let Some(sender) = conn.as_mut() else { return false };
    if sender.ready().await.is_err() {
        return false;
    }
    let req = http::Request::get("/").header(http::header::HOST, host).body(Empty::new());
    let Ok(req) = req else { return false };
    match sender.send_request(req).await {
        Ok(resp) => resp.status().is_success() && resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}
