//! What the tests of replicas and of the multi-host bed share: waiting for a condition, and
//! load through a caller's proxy that counts what failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use trellis_server::testing::http_request;

/// Polls `f` every 20 ms until it gives a value; fails the test after `within`.
pub async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /stock` to inventory through a caller's outbound listener, one after another, until
/// stopped (and at most five minutes, whatever happens to the test).
pub struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Outcome>,
}

#[derive(Debug)]
pub struct Outcome {
    pub sent: u64,
    pub failed: u64,
    /// The first few failures, as the client saw them.
    pub why: Vec<String>,
}

impl Outcome {
    pub fn success_percent(&self) -> f64 {
        100.0 * (self.sent - self.failed) as f64 / self.sent.max(1) as f64
    }
}

impl Load {
    pub fn start(caller: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut out = Outcome { sent: 0, failed: 0, why: Vec::new() };
            let until = Instant::now() + Duration::from_secs(300);
            while !stopping.load(Ordering::Relaxed) && Instant::now() < until {
                out.sent += 1;
                let answer =
                    http_request(http::Method::GET, caller, "/stock", &[("host", "inventory")], Default::default())
                        .await;
                if !matches!(&answer, Ok((status, _)) if *status == 200) {
                    out.failed += 1;
                    if out.why.len() < 5 {
                        out.why.push(format!("{answer:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            out
        });
        Load { stop, task }
    }

    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task")
    }
}
