//! The audit log at scale: writes events through the control plane's own writer (spool with
//! fsync, then batched, hash-chained inserts) into a fresh Postgres database until it holds
//! `--events`, reporting the writer's sustained rate; then times filtered page queries over
//! the full table and prints the indexes and the plans behind them.

use clap::Parser;
use std::time::{Duration, Instant};
use trellis_api::AuditFilter;
use trellis_server::audit::Audit;
use trellis_server::store::{NewEvent, Store};
use trellis_server::testing::PgDatabase;

#[derive(Parser)]
struct Args {
    /// Events in the table when the queries run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events handed to the writer between waits for it to catch up.
    #[arg(long, default_value_t = 20_000)]
    burst: usize,
    /// Keep the database afterwards (its name is printed).
    #[arg(long)]
    keep: bool,
}

const SERVICES: usize = 40;
const ACTORS: usize = 60;
const KINDS: [&str; 8] = [
    "revision.applied",
    "revision.rejected",
    "revision.synced",
    "rollout.analysed",
    "rollout.stepped",
    "proxy.joined",
    "proxy.left",
    "auth.login",
];

fn event(i: usize) -> NewEvent {
    let service = format!("svc-{}", i % SERVICES);
    NewEvent {
        at: 1_700_000_000_000 + i as i64 * 100,
        kind: KINDS[i % KINDS.len()].into(),
        actor: format!("user-{}", (i / 7) % ACTORS),
        revision: Some(format!("{:040x}", i / 50)),
        service: Some(service.clone()),
        summary: format!("event {i}: {service} moved 10% from v1 to v2 after review of change #{}", i / 3),
        detail: serde_json::json!({ "i": i, "changes": [{ "text": "10% moves from v1 to v2" }] }),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = PgDatabase::create().await;
    println!("database {} on {}", db.name, trellis_server::testing::postgres_admin_url());
    let store = Store::connect(&db.url).await?;
    let spool = tempfile::tempdir()?;
    let audit = Audit::start(store.clone(), spool.path())?;

    // The writer, sustained: bursts the size of a busy minute, each waited out.
    let started = Instant::now();
    let mut written = 0;
    let mut first_rate = None;
    while written < args.events {
        let n = args.burst.min(args.events - written);
        (written..written + n).for_each(|i| audit.record(event(i)));
        audit.flush(Duration::from_secs(600)).await;
        written += n;
        if first_rate.is_none() && written >= 200_000.min(args.events) {
            first_rate = Some(written as f64 / started.elapsed().as_secs_f64());
        }
        if written % 100_000 == 0 {
            eprintln!("  {written} events, {:.0}/s", written as f64 / started.elapsed().as_secs_f64());
        }
    }
    let total = started.elapsed();
    let stored = sqlx_count(&db.url).await?;
    println!(
        "writer: {written} events in {:.1} s = {:.0} events/s (first 200k: {:.0}/s); {stored} rows stored",
        total.as_secs_f64(),
        written as f64 / total.as_secs_f64(),
        first_rate.unwrap_or_default()
    );

    let deep = (stored / 2) as i64;
    let filters: Vec<(&str, AuditFilter)> = vec![
        ("service", AuditFilter { service: Some("svc-7".into()), ..Default::default() }),
        ("actor", AuditFilter { actor: Some("user-13".into()), ..Default::default() }),
        ("kind family", AuditFilter { kind: Some("rollout".into()), ..Default::default() }),
        (
            "revision prefix",
            AuditFilter { revision: Some(format!("{:040x}", 4_000)[..12].into()), ..Default::default() },
        ),
        (
            "service + time range",
            AuditFilter {
                service: Some("svc-3".into()),
                since: Some(1_700_000_000_000 + 30_000_000),
                until: Some(1_700_000_000_000 + 40_000_000),
                ..Default::default()
            },
        ),
        ("words", AuditFilter { q: Some("change #1234".into()), ..Default::default() }),
    ];
    println!("\n{:<22} {:>12} {:>12} {:>14} {:>8}", "page of 50 by", "newest p50", "newest max", "middle p50", "rows");
    for (name, f) in &filters {
        let (newest, rows) = time_page(&store, f, None).await?;
        let (middle, _) = time_page(&store, f, Some(deep)).await?;
        println!("{name:<22} {:>9.2} ms {:>9.2} ms {:>11.2} ms {rows:>8}", newest.0, newest.1, middle.0);
    }

    println!("\nindexes:");
    for def in
        pg_lines(&db.url, "SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_events' ORDER BY indexname").await?
    {
        println!("  {def}");
    }
    for (name, sql) in [
        ("service", "SELECT id FROM audit_events WHERE id < 9223372036854775807 AND service = 'svc-7' ORDER BY id DESC LIMIT 50".to_string()),
        ("words", "SELECT id FROM audit_events WHERE id < 9223372036854775807 AND LOWER(summary) LIKE '%change #1234%' ORDER BY id DESC LIMIT 50".to_string()),
    ] {
        println!("\nEXPLAIN ANALYZE ({name}):");
        for line in pg_lines(&db.url, &format!("EXPLAIN ANALYZE {sql}")).await? {
            println!("  {line}");
        }
    }
    let verify = Instant::now();
    let v = trellis_server::audit::export::verify(&store).await?;
    println!(
        "\nverify: {} events chained, intact: {}, in {:.1} s",
        v.verifier.chained,
        v.broken.is_none(),
        verify.elapsed().as_secs_f64()
    );
    store.close().await;
    if args.keep {
        println!("kept database {}", db.name);
    } else {
        db.drop_it().await;
    }
    Ok(())
}

/// (p50 ms, max ms) over 21 runs, and the rows of the page.
async fn time_page(store: &Store, f: &AuditFilter, before: Option<i64>) -> anyhow::Result<((f64, f64), usize)> {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..21 {
        let t = Instant::now();
        rows = store.events(f, before, 50).await?.len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(((times[times.len() / 2], times[times.len() - 1]), rows))
}

async fn sqlx_count(url: &str) -> anyhow::Result<i64> {
    Ok(pg_lines(url, "SELECT count(*)::text FROM audit_events")
        .await?
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

async fn pg_lines(url: &str, sql: &str) -> anyhow::Result<Vec<String>> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&mut conn).await?;
    Ok(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).collect())
}
