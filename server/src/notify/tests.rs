use super::*;

fn event(id: i64, kind: &str, service: Option<&str>) -> ChainRow {
    ChainRow {
        id,
        at: 1_000 * id,
        kind: kind.into(),
        actor: "trellis".into(),
        revision: None,
        service: service.map(str::to_string),
        summary: format!("{kind} <{id}> & more"),
        detail: r#"{"reason":"p99 above 500 ms"}"#.into(),
        prev_hash: None,
        hash: None,
    }
}

fn notification(name: &str, events: &[NotifyEvent], services: &[&str], target: NotifyTarget) -> NotificationConfig {
    NotificationConfig {
        name: name.into(),
        events: events.to_vec(),
        services: services.iter().map(|s| s.to_string()).collect(),
        target,
    }
}

fn slack() -> NotifyTarget {
    NotifyTarget::Slack { url_from: "TRELLIS_SLACK_URL".into() }
}

fn hook() -> NotifyTarget {
    NotifyTarget::Webhook { url: Some("http://hooks/x".into()), url_from: None, secret_from: "TRELLIS_HOOK_KEY".into() }
}

#[test]
fn each_notification_gets_the_events_it_wants_about_its_services() {
    use NotifyEvent::*;
    let all = BTreeMap::from([
        ("aborts".to_string(), notification("aborts", &[RolloutAborted, RevisionRejected], &["inventory"], slack())),
        ("all".to_string(), notification("all", &NotifyEvent::ALL, &[], hook())),
    ]);
    let events = [
        event(1, "rollout.aborted", Some("inventory")),
        event(2, "rollout.aborted", Some("catalog")),
        event(3, "revision.rejected", None),
        event(4, "rollout.awaiting_promotion", Some("inventory")),
        event(5, "proxy.joined", Some("inventory")),
        event(6, "notification.delivered", Some("inventory")),
    ];
    let got: Vec<(String, i64, String)> =
        deliveries(&events, &all).into_iter().map(|d| (d.notification, d.event_id, d.event)).collect();
    let want = [
        ("aborts", 1, "rollout-aborted"),
        ("all", 1, "rollout-aborted"),
        ("all", 2, "rollout-aborted"),
        ("aborts", 3, "revision-rejected"),
        ("all", 3, "revision-rejected"),
        ("all", 4, "rollout-paused"),
    ];
    let want: Vec<(String, i64, String)> = want.iter().map(|(n, i, e)| (n.to_string(), *i, e.to_string())).collect();
    assert_eq!(got, want, "catalog's abort is not the aborts channel's; joins and outcomes are nobody's");
    let d = &deliveries(&events[..1], &all)[0];
    let payload: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
    assert_eq!(payload["detail"]["reason"], "p99 above 500 ms");
    assert_eq!(serde_json::from_str::<NotifyTarget>(&d.target).unwrap(), slack());
}

#[test]
fn tries_back_off_to_five_minutes_and_only_a_busy_or_broken_receiver_is_tried_again() {
    let waits: Vec<i64> = (1..=10).map(backoff_ms).collect();
    assert_eq!(waits[..4], [1_000, 2_000, 4_000, 8_000]);
    assert_eq!(waits[9], 300_000);
    assert!(waits.iter().sum::<i64>() < 25 * 60_000, "given up within half an hour");
    assert!(retryable(503) && retryable(429) && retryable(500) && retryable(408));
    assert!(!retryable(400) && !retryable(401) && !retryable(404));
}

#[test]
fn a_webhook_gets_the_event_as_json_and_slack_a_line_of_text() {
    let all = BTreeMap::from([("a".to_string(), notification("a", &[NotifyEvent::RolloutAborted], &[], hook()))]);
    let d = &deliveries(&[event(7, "rollout.aborted", Some("inventory"))], &all)[0];
    let row = DeliveryRow {
        id: 42,
        delivery: d.clone(),
        state: "pending".into(),
        attempts: 0,
        next_at: 0,
        last_error: None,
        created_at: 0,
        updated_at: 0,
    };
    let json: serde_json::Value = serde_json::from_slice(&body(&hook(), &row)).unwrap();
    assert_eq!((json["delivery"].as_i64(), json["event"].as_str()), (Some(42), Some("rollout-aborted")));
    assert_eq!(json["audit"]["kind"], "rollout.aborted");
    assert_eq!(json["service"], "inventory");
    let text: serde_json::Value = serde_json::from_slice(&body(&slack(), &row)).unwrap();
    assert_eq!(text["text"], ":x: *rollout-aborted* rollout.aborted &lt;7&gt; &amp; more _(by trellis)_");
}

#[test]
fn secrets_come_from_the_environment_and_a_missing_one_is_named() {
    let env = |k: &str| (k == "TRELLIS_HOOK_KEY").then(|| "k".to_string());
    assert_eq!(resolve(&hook(), env), Ok(("http://hooks/x".into(), Some("k".into()))));
    assert_eq!(resolve(&slack(), env), Err("TRELLIS_SLACK_URL is not set".into()));
}

#[test]
fn an_anchor_is_warned_of_a_month_ahead_and_the_issuer_made_at_each_start_a_week_ahead() {
    let (day, now) = (DAY_MS, 20_000 * DAY_MS);
    assert_eq!(expiring(now, now + 3_650 * day, now + 29 * day), None, "a fresh start's issuer");
    assert_eq!(expiring(now, now + 3_650 * day, now + 6 * day), Some(("issuing certificate", now + 6 * day)));
    assert_eq!(
        expiring(now, now + 20 * day, now + 6 * day),
        Some(("issuing certificate", now + 6 * day)),
        "the sooner"
    );
    assert_eq!(expiring(now, now + 20 * day, now + 29 * day), Some(("trust anchor", now + 20 * day)));
    assert_eq!(expiring(now, now - day, now + 29 * day), Some(("trust anchor", now - day)), "an expired one still is");
    assert_eq!(expiring(now, 0, 0), None, "unreadable dates say nothing");
}
