//! `fleetsim`: N lightweight simulated proxies against a control plane of one or more
//! replicas, spread across them. Each joins as `trellis-proxy` does (so handshakes and
//! certificates count too). The harness commits to the policy repository and measures how long
//! each proxy takes to ACK the new revision. With several replicas it then kills the leader
//! (SIGKILL) and measures how long the others take to elect a new one, how long the killed
//! replica's proxies take to be connected elsewhere, and a commit's ACKs once more.
//!
//! The proxies take the demo mesh's shape (storefront calls inventory and catalog), and take
//! deltas unless `--full` makes every change a full config, to show what deltas save.
//!
//! Prints one JSON object: the figures in ms (takeover in s), the control plane's resident
//! memory and CPU seconds (read from /proc of `--cp-pid`) and the simulation's own CPU.

mod harness;
mod proxy;

use clap::Parser;
use harness::{Quantiles, ack_times, commit, proc_stats};
use proxy::{Fleet, Plan, Slot};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The control plane's allocator: glibc's spent the simulation a third more CPU on the same
/// fleet, which would count against the control plane's figures on a shared machine.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// The control plane's replicas, comma-separated, e.g. http://127.0.0.1:18980,http://127.0.0.2:18980.
    #[arg(long, value_delimiter = ',', required = true)]
    control_plane: Vec<String>,
    /// Their process ids, in the same order, to read memory and CPU and to kill the leader.
    #[arg(long, value_delimiter = ',', required = true)]
    cp_pid: Vec<u32>,
    /// The policy repository to commit to.
    #[arg(long)]
    repo: String,
    #[arg(long, default_value_t = 1000)]
    proxies: usize,
    /// Each service's join token (`trellis join-token <service>`): storefront=…,inventory=…,catalog=….
    #[arg(long, value_delimiter = ',', required = true)]
    join_tokens: Vec<String>,
    /// Take no deltas: every change is sent as a full config.
    #[arg(long)]
    full: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.control_plane.len() == args.cp_pid.len(), "one --cp-pid per --control-plane");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let fleet: Fleet = Arc::new(Mutex::new(vec![Slot::default(); args.proxies]));
    let replicas = Arc::new(args.control_plane.clone());
    let tokens = args.join_tokens.iter().map(|t| t.split_once('=').map(|(s, t)| (s.to_string(), t.to_string())));
    let tokens = tokens.collect::<Option<_>>().ok_or_else(|| anyhow::anyhow!("--join-tokens takes service=token"))?;
    let plan = Arc::new(Plan { tokens, incremental: !args.full });
    let (rss_empty, cpu_empty) = proc_stats(&args.cp_pid);
    for i in 0..args.proxies {
        tokio::spawn(proxy::run(i, replicas.clone(), plan.clone(), fleet.clone()));
        // Stagger the joins a little, as a fleet rolling out would.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every proxy has a config before the measured commit.
    let joined = Instant::now();
    harness::wait(Duration::from_secs(120), "every simulated proxy to get a config", || {
        harness::snapshot(&fleet).iter().all(|s| s.acked.is_some()).then_some(())
    })
    .await?;
    let join_s = joined.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spread = harness::snapshot(&fleet).iter().fold(vec![0; replicas.len()], |mut n, s| {
        if let Some((r, _)) = s.on {
            n[r] += 1;
        }
        n
    });
    let telemetry = steady_telemetry(&args.cp_pid, &fleet).await;
    let (rss_before, cpu_before) = proc_stats(&args.cp_pid);
    let (sim_before, (received_before, fulls_before)) = (own_cpu(), received(&fleet));
    let (ack, cp_synced) = commit_and_wait(&args.repo, &fleet, (replicas.len() == 1).then(|| &*replicas[0])).await?;
    let (rss_after, cpu_after) = proc_stats(&args.cp_pid);
    let (received_after, fulls_after) = received(&fleet);
    let n = args.proxies as f64;
    let mut report = serde_json::json!({
        "proxies": args.proxies,
        "replicas": replicas.len(),
        "deltas": plan.incremental,
        "spread": spread,
        "join_s": join_s,
        "commit_to_ack_ms": ack,
        "cp_synced_ms": cp_synced,
        "cp_rss_mb": { "empty": rss_empty, "fleet_joined": rss_before, "after_commit": rss_after },
        "cp_kb_per_proxy": (rss_before - rss_empty) * 1024.0 / n,
        "cp_cpu_ms_per_join": (cpu_before - cpu_empty) * 1000.0 / n,
        "telemetry": telemetry,
        "cp_cpu_s_for_commit": cpu_after - cpu_before,
        "sim_cpu_s_for_commit": own_cpu() - sim_before,
        "bytes_per_proxy_for_commit": (received_after - received_before) as f64 / n,
        "full_configs_for_commit": fulls_after - fulls_before,
        "streams_reopened": harness::snapshot(&fleet).iter().map(|s| s.streams.saturating_sub(1)).sum::<u64>(),
    });
    if replicas.len() > 1 {
        report["leader_killed"] = kill_leader(&args, &fleet).await?;
    }
    println!("{report}");
    Ok(())
}

/// Commits and waits for every proxy to ACK the new revision: commit-to-ACK quantiles (an ACK
/// is stamped when the proxy wrote it), and when the control plane `cp` (if given) counted
/// every proxy synced.
async fn commit_and_wait(repo: &str, fleet: &Fleet, cp: Option<&str>) -> anyhow::Result<(Quantiles, Option<f64>)> {
    let committed = commit(repo)?;
    let start = Instant::now();
    let times = harness::wait(Duration::from_secs(60), "every proxy to ACK the commit", || {
        ack_times(&harness::snapshot(fleet), &committed, start)
    })
    .await
    .map_err(|e| {
        let slots = harness::snapshot(fleet);
        let acked = slots.iter().filter(|s| s.acked.as_ref().is_some_and(|(r, _)| *r == committed)).count();
        let on = slots.iter().filter(|s| s.on.is_some()).count();
        let missing: Vec<String> = (slots.iter().enumerate())
            .filter(|(_, s)| s.acked.as_ref().is_none_or(|(r, _)| *r != committed))
            .take(5)
            .map(|(i, s)| format!("sim-{i} ({}, {} streams, {} fulls)", proxy::service_of(i), s.streams, s.fulls))
            .collect();
        e.context(format!("{acked} of {} proxies ACKed it; {on} had a stream open; not: {missing:?}", slots.len()))
    })?;
    let synced = match cp {
        Some(cp) => Some(harness::synced(cp, times.len(), start).await?),
        None => None,
    };
    Ok((Quantiles::of(times), synced))
}

/// SIGKILLs the leader, then measures the takeover, the moves of its proxies, and a commit.
async fn kill_leader(args: &Args, fleet: &Fleet) -> anyhow::Result<serde_json::Value> {
    let replicas = &args.control_plane;
    let mut leader = None;
    let asked = Instant::now();
    while leader.is_none() {
        anyhow::ensure!(asked.elapsed() < Duration::from_secs(20), "no replica says it leads");
        leader = harness::leader(replicas, &[]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = leader.unwrap_or_default();
    let victims: Vec<usize> = harness::snapshot(fleet)
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.on, Some((r, _)) if r == leader))
        .map(|(i, _)| i)
        .collect();
    std::process::Command::new("kill").args(["-9", &args.cp_pid[leader].to_string()]).status()?;
    let killed = Instant::now();
    let (mut takeover, mut moved) = (None, None);
    while takeover.is_none() || moved.is_none() {
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "no takeover or not every proxy moved in 60 s");
        if takeover.is_none() && harness::leader(replicas, &[leader]).await.is_some() {
            takeover = Some(killed.elapsed().as_secs_f64());
        }
        if moved.is_none() {
            let now = harness::snapshot(fleet);
            let times: Option<Vec<f64>> = victims
                .iter()
                .map(|&i| match now[i].on {
                    Some((r, at)) if r != leader && at > killed => Some(ms(at - killed)),
                    _ => None,
                })
                .collect();
            moved = times;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ack, _) = commit_and_wait(&args.repo, fleet, None).await?;
    Ok(serde_json::json!({
        "replica": replicas[leader],
        "takeover_s": takeover,
        "proxies_moved": victims.len(),
        "reconnect_ms": moved.map(Quantiles::of),
        "commit_to_ack_ms": ack,
    }))
}

/// Ten seconds of the joined fleet at rest but for its reports (every proxy, as often as the
/// control plane asks): reports taken per second, those deferred, and the control plane's CPU for them.
async fn steady_telemetry(cp_pid: &[u32], fleet: &Fleet) -> serde_json::Value {
    let count =
        |fleet: &Fleet| harness::snapshot(fleet).iter().fold((0, 0), |(r, d), s| (r + s.reports, d + s.deferred));
    let ((reports, deferred), (_, cpu), sim) = (count(fleet), proc_stats(cp_pid), own_cpu());
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let ((reports_after, deferred_after), (_, cpu_after)) = (count(fleet), proc_stats(cp_pid));
    let taken = (reports_after - reports) as f64;
    serde_json::json!({
        "reports_per_s": taken / window.as_secs_f64(),
        "deferred_per_s": (deferred_after - deferred) as f64 / window.as_secs_f64(),
        "cp_cpu_per_s": (cpu_after - cpu) / window.as_secs_f64(),
        "cp_cpu_us_per_report": if taken > 0.0 { (cpu_after - cpu) * 1e6 / taken } else { 0.0 },
        "sim_cpu_per_s": (own_cpu() - sim) / window.as_secs_f64(),
    })
}

/// The simulation's own CPU seconds: it shares the machine with the control plane.
fn own_cpu() -> f64 {
    proc_stats(&[std::process::id()]).1
}

/// Config bytes the fleet was sent, and full configs among them, all told.
fn received(fleet: &Fleet) -> (u64, u64) {
    harness::snapshot(fleet).iter().fold((0, 0), |(b, f), s| (b + s.received, f + s.fulls))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
