//! The store against both engines: a real Postgres (its own database, dropped afterwards) and
//! an embedded SQLite file. Postgres must be reachable: these tests fail, never skip, without it.

use trellis_api::{AuditFilter, RevisionView};
use trellis_model::diff::{Change, ChangeKind};
use trellis_model::{Code, Diagnostic, diagnostic::Pos};
use trellis_server::audit::spool::Spooled;
use trellis_server::store::{NewEvent, Store};
use trellis_server::testing::PgDatabase;

/// Runs `trellis audit ARGS` against the database; returns exit code and stdout.
async fn audit_cli(url: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.arg("audit").args(args).env("DATABASE_URL", url);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() != Some(2), "trellis audit {args:?} could not run: {stderr}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
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

    // As the control plane's writer does: each batch links to the stored tail.
    let mut prev = store.audit_tail().await.unwrap().map(|(hash, _)| hash).unwrap_or_default();
    for i in 0..5 {
        let e = NewEvent {
            at: 1000 + i,
            kind: if i % 2 == 0 { "revision.applied" } else { "rollout.stepped" }.into(),
            actor: if i < 3 { "ada" } else { "bob" }.into(),
            revision: (i % 2 == 0).then(|| format!("r{i}")),
            service: Some(if i % 2 == 0 { "shop" } else { "inventory" }.into()),
            summary: format!("Event {i}"),
            detail: serde_json::json!({ "i": i }),
        };
        prev = trellis_server::audit::chain::append(&store, &[Spooled::new(e)], &prev).await.unwrap();
    }
    let all = AuditFilter::default();
    let first = store.events(&all, None, 3).await.unwrap();
    let summaries: Vec<&str> = first.iter().map(|e| e.summary.as_str()).collect();
    assert_eq!(summaries, vec!["Event 4", "Event 3", "Event 2"]);
    assert_eq!(first[0].revision.as_deref(), Some("r4"));
    assert_eq!(first[0].detail, serde_json::json!({ "i": 4 }));
    assert_eq!(first[1].revision, None);
    let rest = store.events(&all, Some(first[2].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);

    // Filters narrow; a kind names itself or its family.
    let at = |f: AuditFilter| {
        let store = store.clone();
        async move { store.events(&f, None, 10).await.unwrap().iter().map(|e| e.at - 1000).collect::<Vec<_>>() }
    };
    assert_eq!(at(AuditFilter { kind: Some("rollout".into()), ..all.clone() }).await, vec![3, 1]);
    assert_eq!(at(AuditFilter { kind: Some("rollout.stepped".into()), ..all.clone() }).await, vec![3, 1]);
    assert_eq!(at(AuditFilter { service: Some("shop".into()), ..all.clone() }).await, vec![4, 2, 0]);
    assert_eq!(at(AuditFilter { actor: Some("bob".into()), ..all.clone() }).await, vec![4, 3]);
    assert_eq!(at(AuditFilter { revision: Some("r2".into()), ..all.clone() }).await, vec![2]);
    assert_eq!(at(AuditFilter { q: Some("EVENT 1".into()), ..all.clone() }).await, vec![1]);
    assert_eq!(at(AuditFilter { q: Some("%".into()), ..all.clone() }).await, Vec::<i64>::new(), "wildcards are text");
    assert_eq!(at(AuditFilter { since: Some(1001), until: Some(1003), ..all.clone() }).await, vec![2, 1]);

    // Append-only: the database itself refuses changes; the chain finds them anyway.
    let v = trellis_server::audit::export::verify(&store).await.unwrap();
    assert!(v.broken.is_none());
    assert_eq!(v.verifier.chained, 5);
    let (code, out) = audit_cli(url, &["verify"]).await;
    assert_eq!((code, out.trim()), (0, "audit chain intact: 5 events linked"));
    let (_, out) = audit_cli(url, &["list", "--actor", "bob"]).await;
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, csv) = audit_cli(url, &["export", "--format", "csv", "--service", "shop"]).await;
    assert_eq!(csv.lines().count(), 4, "a header and three events: {csv}");
    assert!(csv.starts_with("id,at_ms,time,kind,actor,service,revision,summary,hash\n"), "{csv}");
    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    let target = first[1].id;
    let update = format!("UPDATE audit_events SET actor = 'mallory' WHERE id = {target}");
    let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(update.clone())).execute(&raw).await.unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    let delete = format!("DELETE FROM audit_events WHERE id = {target}");
    let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(delete)).execute(&raw).await.unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    // Someone with the keys to the database turns the guard off and edits a row.
    let disable = if url.starts_with("postgres") {
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"
    } else {
        "DROP TRIGGER audit_events_no_update"
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(disable)).execute(&raw).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(update)).execute(&raw).await.unwrap();
    let v = trellis_server::audit::export::verify(&store).await.unwrap();
    let broken = v.broken.expect("the edited event is found");
    assert_eq!(broken.id, target);
    assert!(broken.why.contains("the event was changed"), "{}", broken.why);
    let (code, out) = audit_cli(url, &["verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with(&format!("audit chain broken at event {target}:")), "{out}");
    raw.close().await;

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
