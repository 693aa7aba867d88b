//! The store against both engines: a real Postgres (its own database, dropped afterwards) and
//! an embedded SQLite file. Postgres must be reachable: these tests fail, never skip, without it.

use trellis_api::{AuditFilter, RevisionView};
use trellis_model::diff::{Change, ChangeKind};
use trellis_model::{Code, Diagnostic, diagnostic::Pos};
use trellis_server::audit::spool::Spooled;
use trellis_server::store::{
    Fence, LEADER, MemberStatus, NewDelivery, NewEvent, ReplicaRow, SessionRow, Store, StoreError,
};
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
    for i in 0..5 {
        let e = NewEvent {
            at: 1000 + i,
            kind: match i {
                1 => "rollout.analysed",
                _ if i % 2 == 0 => "revision.applied",
                _ => "rollout.stepped",
            }
            .into(),
            actor: if i < 3 { "ada" } else { "bob" }.into(),
            revision: (i % 2 == 0).then(|| format!("r{i}")),
            service: Some(if i % 2 == 0 { "shop" } else { "inventory" }.into()),
            summary: format!("Event {i}"),
            detail: serde_json::json!({ "i": i }),
        };
        trellis_server::audit::chain::append(&store, &[Spooled::new(e)]).await.unwrap();
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
    assert_eq!(at(AuditFilter { kind: Some("rollout.stepped".into()), ..all.clone() }).await, vec![3]);
    assert_eq!(at(AuditFilter { service: Some("shop".into()), ..all.clone() }).await, vec![4, 2, 0]);
    assert_eq!(at(AuditFilter { actor: Some("bob".into()), ..all.clone() }).await, vec![4, 3]);
    assert_eq!(at(AuditFilter { revision: Some("r2".into()), ..all.clone() }).await, vec![2]);
    assert_eq!(at(AuditFilter { q: Some("EVENT 1".into()), ..all.clone() }).await, vec![1]);
    assert_eq!(at(AuditFilter { q: Some("%".into()), ..all.clone() }).await, Vec::<i64>::new(), "wildcards are text");
    assert_eq!(at(AuditFilter { since: Some(1001), until: Some(1003), ..all.clone() }).await, vec![2, 1]);
    assert_eq!(at(AuditFilter { significant: true, ..all.clone() }).await, vec![4, 3, 2, 0], "no analysis");

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

    // A spool replayed after a crash: what already landed is skipped, not stored twice.
    let replayed = Spooled {
        uid: "replayed-uid".into(),
        event: NewEvent {
            at: 999,
            kind: "auth.login".into(),
            actor: "cy".into(),
            revision: None,
            service: None,
            summary: "replayed".into(),
            detail: serde_json::json!({}),
        },
    };
    trellis_server::audit::chain::append(&store, std::slice::from_ref(&replayed)).await.unwrap();
    trellis_server::audit::chain::append(&store, &[replayed]).await.unwrap();
    let by_cy = AuditFilter { actor: Some("cy".into()), ..Default::default() };
    assert_eq!(store.events(&by_cy, None, 10).await.unwrap().len(), 1, "stored once");

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
        analysed_to_s: 0,
    };
    // Rollout states are written for the leader's term only.
    let a = store.claim_lease(LEADER, "a", 60_000, false).await.unwrap().expect("a free lease is taken");
    assert_eq!((a.holder.as_str(), a.token), ("a", 1));
    assert!(a.expires_at >= a.now + 59_000, "{a:?}");
    assert_eq!(store.claim_lease(LEADER, "b", 60_000, false).await.unwrap(), None, "a holds it");
    let renewed = store.claim_lease(LEADER, "a", 60_000, false).await.unwrap().unwrap();
    assert_eq!((renewed.token, renewed.acquired_at), (1, a.acquired_at), "a renewal is the same term");
    let fence_a = Fence { holder: "a".into(), token: 1 };
    store.save_rollout(&state, 1, &fence_a).await.unwrap();
    state.step = 1;
    state.phase = trellis_model::rollout::Phase::Paused { reason: "paused by ann".into() };
    store.save_rollout(&state, 2, &fence_a).await.unwrap();
    assert_eq!(store.rollouts().await.unwrap(), vec![state.clone()]);

    // b takes over (forced here; in service, once a's lease expires): a's writes are refused.
    let b = store.claim_lease(LEADER, "b", 60_000, true).await.unwrap().unwrap();
    assert_eq!(b.token, 2, "a new holder is a new term");
    let mut stale = state.clone();
    stale.step = 7;
    assert!(matches!(store.save_rollout(&stale, 3, &fence_a).await, Err(StoreError::Fenced)));
    store.forget_rollout("shop-v2", &fence_a).await.unwrap();
    assert_eq!(store.rollouts().await.unwrap(), vec![state], "the old leader changed nothing");
    assert_eq!(store.lease(LEADER).await.unwrap().unwrap().holder, "b");
    store.release_lease(LEADER, "b").await.unwrap();
    let c = store.claim_lease(LEADER, "c", 60_000, false).await.unwrap().expect("a released lease is free");
    assert_eq!(c.token, 3);
    store.forget_rollout("shop-v2", &Fence { holder: "c".into(), token: 3 }).await.unwrap();
    assert!(store.rollouts().await.unwrap().is_empty());

    // Replicas say they are alive; the list holds those seen lately.
    let row =
        ReplicaRow { id: "r1".into(), address: "http://r1".into(), version: "1".into(), started_at: 5, seen_at: 0 };
    store.replica_alive(&row).await.unwrap();
    let (replicas, now) = store.replicas(10_000).await.unwrap();
    assert_eq!(replicas.len(), 1);
    assert!((replicas[0].seen_at - now).abs() < 5_000, "{replicas:?} at {now}");
    store.notify("changed").await.unwrap();

    // The fleet's rows: written by the replica each proxy is connected to, read by the others.
    let member = |id: &str| {
        let reg = trellis_model::fleet::Registration {
            proxy_id: id.into(),
            service: "shop".into(),
            version: "v1".into(),
            inbound_addr: "10.0.0.1:4143".into(),
            admin_addr: "10.0.0.1:4191".into(),
            incremental: false,
            resume: None,
            max_ping_every_s: None,
            proxy_version: "t".into(),
        };
        (reg, MemberStatus { acked: Some("r.1".into()), ..Default::default() })
    };
    store.share_members("r1", &[member("p1"), member("p2")]).await.unwrap();
    let seen = store.members_elsewhere("r2", 10_000, 10_000).await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|m| m.connected && m.replica == "r1" && m.status.acked.as_deref() == Some("r.1")));
    assert!(store.members_elsewhere("r1", 10_000, 10_000).await.unwrap().is_empty(), "not its own");
    store.share_members("r2", &[member("p2")]).await.unwrap();
    store.member_disconnected("r1", "p2").await.unwrap();
    store.member_disconnected("r1", "p1").await.unwrap();
    let seen = store.members_elsewhere("r3", 10_000, 10_000).await.unwrap();
    let p2 = seen.iter().find(|m| m.registration.proxy_id == "p2").unwrap();
    assert!(p2.connected && p2.replica == "r2", "the newest connection keeps the row: {p2:?}");
    assert!(!seen.iter().find(|m| m.registration.proxy_id == "p1").unwrap().connected);
    store.touch_members("r2").await.unwrap();
    assert_eq!(store.recent_members("r2", 60_000).await.unwrap(), vec!["p2".to_string()]);
    store.forget_member("r1", "p2").await.unwrap();
    store.forget_member("r1", "p1").await.unwrap();
    assert_eq!(store.members_elsewhere("r3", 10_000, 10_000).await.unwrap().len(), 1, "p2 is r2's to forget");

    // Two replicas writing the same rows at once, in opposite orders, with the same proxy twice
    // (its newest status kept), and one keeping its rows fresh: none is a deadlock's victim.
    if store.is_shared() {
        let ids: Vec<String> = (0..150).map(|i| format!("m{i:03}")).collect();
        let forward: Vec<_> = ids.iter().map(|id| member(id)).collect();
        let mut backward: Vec<_> = forward.iter().rev().cloned().collect();
        backward.push((member("m000").0, MemberStatus { acked: Some("r.2".into()), ..Default::default() }));
        for _ in 0..20 {
            let (a, b, c) = tokio::join!(
                store.share_members("r1", &forward),
                store.share_members("r2", &backward),
                store.touch_members("r1"),
            );
            a.unwrap();
            b.unwrap();
            c.unwrap();
        }
        store.share_members("r2", &backward).await.unwrap();
        let seen = store.members_elsewhere("r3", 10_000, 10_000).await.unwrap();
        let m000 = seen.iter().find(|m| m.registration.proxy_id == "m000").unwrap();
        assert_eq!(m000.status.acked.as_deref(), Some("r.2"), "the later of two rows for one proxy: {m000:?}");
        for id in &ids {
            store.forget_member("r1", id).await.unwrap();
            store.forget_member("r2", id).await.unwrap();
        }
    }

    // Seconds of telemetry: each replica's once, old ones removed.
    store.share_seconds("r1", &[(100, "a".into()), (101, "b".into())], 0).await.unwrap();
    store.share_seconds("r2", &[(101, "c".into())], 0).await.unwrap();
    store.share_seconds("r1", &[(101, "again".into())], 0).await.unwrap();
    let seconds = store.telemetry_seconds(101).await.unwrap();
    assert_eq!(seconds.len(), 2, "{seconds:?}");
    assert!(seconds.contains(&("r1".to_string(), 101, "b".to_string())), "written once: {seconds:?}");
    store.share_seconds("r2", &[], 101).await.unwrap();
    assert_eq!(store.telemetry_seconds(0).await.unwrap().len(), 2, "second 100 is gone");

    // Sessions: found until they expire or are deleted.
    let session = SessionRow { user: "ann".into(), role: "operator".into(), csrf: "c".into(), expires_at: 2_000 };
    store.create_session("h1", &session, 1_000, 10).await.unwrap();
    assert_eq!(store.session("h1", 1_500).await.unwrap(), Some(session.clone()));
    assert_eq!(store.session("h1", 2_500).await.unwrap(), None, "expired");
    store.delete_session("h1").await.unwrap();
    assert_eq!(store.session("h1", 1_500).await.unwrap(), None);
    // Beyond the bound, the sessions nearest their end go first.
    for i in 0..4 {
        let s = SessionRow { expires_at: 10_000 + i, ..session.clone() };
        store.create_session(&format!("s{i}"), &s, 1_000, 3).await.unwrap();
    }
    assert_eq!(store.session("s0", 1_000).await.unwrap(), None);
    assert!(store.session("s3", 1_000).await.unwrap().is_some());

    // Notification deliveries: queued once per (notification, event), however often offered.
    let last = store.last_audit_id().await.unwrap();
    assert!(last > 0);
    let cursor = store.notification_cursor().await.unwrap();
    assert!(cursor.is_some_and(|c| c <= last), "the migration starts reading where the log stood");
    let delivery = |n: &str, id: i64| NewDelivery {
        notification: n.into(),
        event_id: id,
        event: "rollout-aborted".into(),
        service: Some("inventory".into()),
        target: r#"{"type":"slack","url_from":"X"}"#.into(),
        payload: r#"{"summary":"aborted"}"#.into(),
    };
    store.enqueue_deliveries(&[delivery("a", 1), delivery("b", 1)], 7, 5_000).await.unwrap();
    store.enqueue_deliveries(&[delivery("a", 1), delivery("a", 2)], 9, 6_000).await.unwrap();
    assert_eq!(store.notification_cursor().await.unwrap(), Some(9));
    let due = store.due_deliveries(6_000, 10).await.unwrap();
    let queued: Vec<(&str, i64)> =
        due.iter().map(|d| (d.delivery.notification.as_str(), d.delivery.event_id)).collect();
    assert_eq!(queued, [("a", 1), ("b", 1), ("a", 2)]);
    let mut tried = due[0].clone();
    (tried.attempts, tried.next_at, tried.last_error) = (1, 8_000, Some("the receiver answered 503".into()));
    store.update_delivery(&tried, 6_000).await.unwrap();
    assert_eq!(store.due_deliveries(7_000, 10).await.unwrap().len(), 2, "not due again before its backoff");
    tried.state = "delivered".into();
    store.update_delivery(&tried, 8_500).await.unwrap();
    assert_eq!(store.due_deliveries(9_000, 10).await.unwrap().len(), 2, "delivered is done");
    let recent = store.recent_deliveries(2).await.unwrap();
    assert_eq!(recent.iter().map(|d| d.id).collect::<Vec<_>>(), [due[2].id, due[1].id], "newest first");
    let all = store.recent_deliveries(10).await.unwrap();
    let first = all.iter().find(|d| d.id == tried.id).unwrap();
    assert_eq!((first.state.as_str(), first.attempts, first.updated_at), ("delivered", 1, 8_500));
    store.close().await;
}

#[tokio::test]
async fn postgres_store() {
    let db = PgDatabase::create().await;
    exercise(&db.url).await;
    db.drop_it().await;
}

/// Replicas append at once, each with its own pool: one chain, nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_one_chain() {
    let db = PgDatabase::create().await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = Store::connect(&db.url).await.unwrap();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                let e = NewEvent {
                    at: i,
                    kind: "test.event".into(),
                    actor: format!("writer-{w}"),
                    revision: None,
                    service: None,
                    summary: format!("event {i} of writer {w}"),
                    detail: serde_json::json!({}),
                };
                let batch = [Spooled::new(e.clone()), Spooled::new(NewEvent { at: i + 1000, ..e })];
                trellis_server::audit::chain::append(&store, &batch).await.unwrap();
            }
            store.close().await;
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let (code, out) = audit_cli(&db.url, &["verify"]).await;
    assert_eq!(code, 0, "{out}");
    let store = Store::connect(&db.url).await.unwrap();
    let kind = AuditFilter { kind: Some("test.event".into()), ..Default::default() };
    assert_eq!(store.events(&kind, None, 500).await.unwrap().len(), 200);
    store.close().await;
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
