//! The harness around the simulated fleet: commits, waits, quantiles, who leads, and what the
//! control plane's processes use.

use crate::proxy::{Fleet, Slot, h2c};
use bytes::Bytes;
use http_body_util::Full;
use std::time::{Duration, Instant};

/// p50, p99 and max of a set of times (ms).
#[derive(serde::Serialize)]
pub struct Quantiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Quantiles {
    pub fn of(mut times: Vec<f64>) -> Self {
        times.sort_by(f64::total_cmp);
        let q = |p: f64| times.get(((times.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
        Quantiles { p50: q(0.5), p99: q(0.99), max: q(1.0) }
    }
}

pub fn snapshot(fleet: &Fleet) -> Vec<Slot> {
    fleet.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Polls `ready` every 5 ms until it gives a value, for at most `limit`.
pub async fn wait<T>(limit: Duration, what: &str, mut ready: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = ready() {
            return Ok(value);
        }
        anyhow::ensure!(start.elapsed() < limit, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Each proxy's time from `start` to its ACK of `revision` (ms), once every proxy has ACKed it.
pub fn ack_times(fleet: &[Slot], revision: &str, start: Instant) -> Option<Vec<f64>> {
    fleet
        .iter()
        .map(|s| match &s.acked {
            Some((rev, at)) if rev == revision => Some(at.saturating_duration_since(start).as_secs_f64() * 1000.0),
            _ => None,
        })
        .collect()
}

/// The time from `start` (ms) until control plane `cp` counts `n` proxies running its current
/// revision (`trellis_fleet_proxies_synced`), polled every 10 ms for at most 10 s.
pub async fn synced(cp: &str, n: usize, start: Instant) -> anyhow::Result<f64> {
    let asked = Instant::now();
    loop {
        let req = http::Request::get(format!("{cp}/metrics")).body(Full::new(Bytes::new()))?;
        let (_, body) = h2c(cp, req).await?;
        let synced = String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix("trellis_fleet_proxies_synced ")?.trim().parse::<usize>().ok());
        if synced.is_some_and(|s| s >= n) {
            return Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(asked.elapsed() < Duration::from_secs(10), "the control plane counts {synced:?} of {n} synced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The replica (index) that says it leads, asking all but `skip`.
pub async fn leader(replicas: &[String], skip: &[usize]) -> Option<usize> {
    for (i, cp) in replicas.iter().enumerate().filter(|(i, _)| !skip.contains(i)) {
        let Ok(req) = http::Request::get(format!("{cp}/metrics")).body(Full::new(Bytes::new())) else { continue };
        let Ok(Ok((_, body))) = tokio::time::timeout(Duration::from_secs(1), h2c(cp, req)).await else { continue };
        let leads = String::from_utf8_lossy(&body)
            .lines()
            .any(|l| l.starts_with("trellis_control_plane_leader{") && l.ends_with(" 1"));
        if leads {
            return Some(i);
        }
    }
    None
}

/// Commits a change to the inventory split and returns the new SHA.
pub fn commit(repo: &str) -> anyhow::Result<String> {
    let file = format!("{repo}/routes/inventory.yaml");
    let text = std::fs::read_to_string(&file)?;
    let next = if text.contains("weight: 90") {
        text.replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20")
    } else if text.contains("weight: 80") {
        text.replace("weight: 80", "weight: 90").replace("weight: 20", "weight: 10")
    } else {
        text.replace("weight: 100", "weight: 90").replace("weight: 0", "weight: 10")
    };
    std::fs::write(&file, next)?;
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-C", repo, "-c", "user.name=bench", "-c", "user.email=bench@trellis.invalid"])
            .args(args)
            .output()
    };
    let out = git(&["commit", "-qam", "fleet benchmark"])?;
    anyhow::ensure!(out.status.success(), "git commit: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(git(&["rev-parse", "HEAD"])?.stdout)?.trim().to_string())
}

/// (largest resident MB, CPU seconds summed) of the processes still running.
pub fn proc_stats(pids: &[u32]) -> (f64, f64) {
    pids.iter().map(|&pid| one_proc(pid)).fold((0.0, 0.0), |(rss, cpu), (r, c)| (rss.max(r), cpu + c))
}

fn one_proc(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (rss, (ticks(11) + ticks(12)) / 100.0)
}
