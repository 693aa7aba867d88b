//! Nothing is lost when the database goes away: the connection to a real Postgres is cut while
//! events are produced; they wait in the spool and land afterwards, every one, in order, with
//! the hash chain intact. A replica that dies with events in its spool writes them when it
//! comes back, into the one chain the others went on writing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use trellis_api::AuditFilter;
use trellis_server::audit::Audit;
use trellis_server::store::{NewEvent, Store};
use trellis_server::testing::PgDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_produced_while_the_database_is_cut_off_all_land_in_order() {
    let db = PgDatabase::create().await;
    let cutter = Cutter::start(postgres_addr(&db.url)).await;
    let url = db.url.replacen(&postgres_addr(&db.url).to_string(), &cutter.addr.to_string(), 1);
    assert_ne!(url, db.url, "the store goes through the cutter");
    let store = Store::connect(&url).await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let audit = Audit::start(store.clone(), spool.path()).unwrap();

    let record = |i: usize| audit.record(event(i));
    (0..50).for_each(record);
    audit.flush(Duration::from_secs(10)).await;
    assert_eq!(count(&store).await, 50);

    cutter.cut();
    (50..150).for_each(record);
    audit.flush(Duration::from_secs(10)).await;
    let spooled = std::fs::metadata(spool.path().join("events.jsonl")).unwrap().len();
    assert!(spooled > 0, "the events wait in the spool on disk");

    cutter.restore();
    (150..200).for_each(record);
    let started = Instant::now();
    while count(&store).await < 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "only {} of 200 landed", count(&store).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut stored = store.events(&AuditFilter::default(), None, 500).await.unwrap();
    stored.reverse();
    let summaries: Vec<String> = stored.iter().map(|e| e.summary.clone()).collect();
    let expected: Vec<String> = (0..200).map(|i| format!("event {i}")).collect();
    assert_eq!(summaries, expected, "every event, once, in the order produced");
    let verified = trellis_server::audit::export::verify(&store).await.unwrap();
    assert!(verified.broken.is_none(), "{:?}", verified.broken);
    assert_eq!(verified.verifier.chained, 200);

    store.close().await;
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_spooled_events_land_once_in_the_shared_chain_when_it_returns() {
    let db = PgDatabase::create().await;
    let cutter = Cutter::start(postgres_addr(&db.url)).await;
    let through_cutter = db.url.replacen(&postgres_addr(&db.url).to_string(), &cutter.addr.to_string(), 1);
    let store = Store::connect(&db.url).await.unwrap();
    let (spool_a, spool_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // Replica A writes, loses the database, spools, and dies: its disk is what it left.
    let a = Audit::start(Store::connect(&through_cutter).await.unwrap(), spool_a.path()).unwrap();
    (0..20).for_each(|i| a.record(event(i)));
    a.flush(Duration::from_secs(10)).await;
    cutter.cut();
    (20..60).for_each(|i| a.record(event(i)));
    a.flush(Duration::from_secs(3)).await;
    let disk = tempfile::tempdir().unwrap();
    std::fs::copy(spool_a.path().join("events.jsonl"), disk.path().join("events.jsonl")).unwrap();
    drop(a);

    // Replica B goes on writing meanwhile.
    let b = Audit::start(store.clone(), spool_b.path()).unwrap();
    (60..90).for_each(|i| b.record(event(i)));
    b.flush(Duration::from_secs(10)).await;
    assert_eq!(count(&store).await, 50, "A's first 20 and B's 30 are stored, A's spool waits");

    // A comes back on its disk: what it spooled lands, once, after B's.
    let back = Audit::start(store.clone(), disk.path()).unwrap();
    back.flush(Duration::from_secs(10)).await;
    let started = Instant::now();
    while count(&store).await < 90 {
        assert!(started.elapsed() < Duration::from_secs(30), "only {} of 90 landed", count(&store).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stored = store.events(&AuditFilter::default(), None, 500).await.unwrap();
    stored.reverse();
    let summaries: Vec<String> = stored.iter().map(|e| e.summary.clone()).collect();
    let expected: Vec<String> = (0..20).chain(60..90).chain(20..60).map(|i| format!("event {i}")).collect();
    assert_eq!(summaries, expected, "every event once: A's, B's, then A's spool");
    let verified = trellis_server::audit::export::verify(&store).await.unwrap();
    assert!(verified.broken.is_none(), "{:?}", verified.broken);
    assert_eq!(verified.verifier.chained, 90);

    store.close().await;
    db.drop_it().await;
}

fn event(i: usize) -> NewEvent {
    NewEvent {
        at: 1_000 + i as i64,
        kind: "test.event".into(),
        actor: "ann".into(),
        revision: None,
        service: Some("shop".into()),
        summary: format!("event {i}"),
        detail: serde_json::json!({ "i": i }),
    }
}

async fn count(store: &Store) -> usize {
    store.events(&AuditFilter::default(), None, 500).await.map(|e| e.len()).unwrap_or(0)
}

fn postgres_addr(url: &str) -> SocketAddr {
    let host_port = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap();
    let host_port = if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:5432") };
    host_port.replace("localhost", "127.0.0.1").parse().unwrap()
}

/// A TCP relay to Postgres that can drop every connection and refuse new ones, as a network
/// partition would.
struct Cutter {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Cutter {
    async fn start(upstream: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (o, g) = (open.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Cutter { addr, open, generation }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
