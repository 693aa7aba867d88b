//! The store against both engines: a real Postgres (its own database, dropped afterwards) and
//! an embedded SQLite file. Postgres must be reachable: these tests fail, never skip, without it.

use sqlx::Connection;
use trellis_model::diff::{Change, ChangeKind};
use trellis_model::{Code, Diagnostic, diagnostic::Pos};
use trellis_server::store::{NewEvent, Store};
use trellis_web::api::RevisionView;

fn admin_url() -> String {
    std::env::var("TRELLIS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of this test's own on the Postgres server.
struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Self {
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("Postgres is required at {admin} (set TRELLIS_TEST_POSTGRES_URL; scripts/test.sh starts one): {e}")
        });
        let name = format!("trellis_test_{:016x}", fastrand::u64(..));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        PgDatabase { url: format!("{base}/{name}"), name }
    }

    async fn drop_it(self) {
        let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        let sql = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
}

fn revision(sha: &str, outcome: &str, errors: Vec<Diagnostic>) -> RevisionView {
    RevisionView {
        sha: sha.into(),
        author: "Ada <ada@example.com>".into(),
        message: format!("commit {sha}"),
        committed_at: 1_700_000_000_000,
        outcome: outcome.into(),
        errors,
        changes: vec![Change { service: Some("shop".into()), kind: ChangeKind::Traffic, text: "10% moves".into() }],
    }
}

async fn exercise(url: &str) {
    let store = Store::connect(url).await.unwrap();
    // Migrations are idempotent: a restarted control plane connects again.
    let store2 = Store::connect(url).await.unwrap();
    store2.close().await;

    let error = Diagnostic::new(Code::YamlSyntax, "routes/a.yaml", Pos { line: 3, column: 7 }, "bad");
    assert!(store.record_revision(&revision("aaa", "applied", vec![]), 1).await.unwrap());
    assert!(store.record_revision(&revision("bbb", "rejected", vec![error.clone()]), 2).await.unwrap());
    assert!(!store.record_revision(&revision("aaa", "applied", vec![]), 3).await.unwrap(), "recorded once");

    let bbb = store.revision("bbb").await.unwrap().unwrap();
    assert_eq!((bbb.outcome.as_str(), bbb.errors.clone()), ("rejected", vec![error]));
    assert_eq!(bbb.changes[0].text, "10% moves");
    assert!(store.revision("zzz").await.unwrap().is_none());

    let page = store.revisions(None, 1).await.unwrap();
    assert_eq!(page[0].1.sha, "bbb", "newest first");
    let next = store.revisions(Some(page[0].0), 1).await.unwrap();
    assert_eq!(next[0].1.sha, "aaa");

    for i in 0..5 {
        let e = NewEvent {
            at: 1000 + i,
            kind: "revision.applied".into(),
            actor: "ada".into(),
            revision: (i % 2 == 0).then(|| format!("r{i}")),
            service: None,
            summary: format!("event {i}"),
            detail: serde_json::json!({ "i": i }),
        };
        store.append(&e).await.unwrap();
    }
    let first = store.events(None, 3).await.unwrap();
    let summaries: Vec<&str> = first.iter().map(|e| e.summary.as_str()).collect();
    assert_eq!(summaries, vec!["event 4", "event 3", "event 2"]);
    assert_eq!(first[0].revision.as_deref(), Some("r4"));
    assert_eq!(first[1].revision, None);
    let rest = store.events(Some(first[2].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);

    // Rollout states: one row per rollout, the newest state wins, gone when forgotten.
    let mut state = trellis_model::rollout::RolloutState {
        name: "shop-v2".into(),
        fingerprint: "f1".into(),
        phase: trellis_model::rollout::Phase::Progressing,
        step: 0,
        step_started_ms: 1,
        next_analysis_ms: 2,
        passed_in_step: false,
        failures: 0,
        inconclusive: 0,
        analyses: Vec::new(),
        recorded: None,
    };
    store.save_rollout(&state, 1).await.unwrap();
    state.step = 1;
    state.phase = trellis_model::rollout::Phase::Paused { reason: "paused by ann".into() };
    store.save_rollout(&state, 2).await.unwrap();
    assert_eq!(store.rollouts().await.unwrap(), vec![state]);
    store.forget_rollout("shop-v2").await.unwrap();
    assert!(store.rollouts().await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn postgres_store() {
    let db = PgDatabase::create().await;
    exercise(&db.url).await;
    db.drop_it().await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    exercise(&Store::sqlite_url(&dir.path().join("trellis.db"))).await;
}

#[tokio::test]
async fn unsupported_urls_say_what_is_supported() {
    let err = Store::connect("mysql://localhost/x").await.err().unwrap();
    assert!(err.to_string().contains("postgres://"), "{err}");
}
