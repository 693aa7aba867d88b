use super::*;
use crate::fleet::tests::mesh;

/// A proxy of `service` registering at `addr`.
fn reg(id: &str, service: &str, addr: &str) -> Registration {
    crate::fleet::tests::reg(id, service, "v1", addr)
}

/// The audit kinds among `effects`, in order.
fn audited(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Audit(event) => Some(event.kind.as_str()),
            _ => None,
        })
        .collect()
}

/// A registry of the leading replica, which records who joins and leaves.
fn leading() -> Registry {
    let mut r = Registry::default();
    r.set_leads(true);
    r
}

fn ack(id: &str, version: &str, error: Option<&str>) -> Ack {
    Ack { proxy_id: id.into(), version: version.into(), error: error.map(str::to_string) }
}

#[test]
fn nothing_is_published_before_the_first_revision_and_a_revision_publishes_at_once() {
    let mut r = leading();
    let (_, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    assert_eq!(audited(&effects), ["proxy.joined"]);
    assert!(effects.iter().any(|e| matches!(e, Effect::Share(reg, _) if reg.proxy_id == "a")), "told to the others");
    assert!(effects.contains(&Effect::PublishSoon), "a new endpoint is endpoint churn: debounced");
    assert!(r.snapshot().is_none());
    assert_eq!(r.set_mesh(mesh("r1"), 10), [Effect::Publish]);
    let snapshot = r.snapshot().unwrap();
    assert_eq!(snapshot.revision, "r1");
    assert!(snapshot.line_for("inventory").is_some() && snapshot.line_for("storefront").is_none(), "served only");
}

#[test]
fn a_reconnect_on_the_same_address_is_no_endpoint_change_and_an_old_streams_end_is_ignored() {
    let mut r = leading();
    let (first, _) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    let (second, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 5);
    assert!(
        audited(&effects).is_empty() && effects.contains(&Effect::Changed) && !effects.contains(&Effect::PublishSoon)
    );
    assert!(r.disconnect("a", first, 6).is_empty(), "the newer stream serves the proxy");
    assert_eq!(r.disconnect("a", second, 7), [Effect::Disconnected("a".into()), Effect::Changed]);
    let (_, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 8);
    assert!(effects.contains(&Effect::PublishSoon), "back from a disconnect: an endpoint again");
}

#[test]
fn sync_is_audited_once_per_revision_and_a_nack_once_per_reason() {
    let mut r = leading();
    r.set_mesh(mesh("r1"), 0);
    r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    r.connect(reg("b", "storefront", "10.0.0.2:4143"), 0);
    let version = r.snapshot().unwrap().version_for("storefront").unwrap().to_string();
    assert!(audited(&r.ack(&ack("a", &version, None), 100).unwrap()).is_empty(), "one of two");
    let nacked = r.ack(&ack("b", &version, Some("regex too big")), 150).unwrap();
    assert_eq!(audited(&nacked), ["proxy.nacked"]);
    assert!(audited(&r.ack(&ack("b", &version, Some("regex too big")), 160).unwrap()).is_empty());
    let synced = r.ack(&ack("b", &version, None), 200).unwrap();
    assert_eq!(audited(&synced), ["revision.synced"]);
    let Some(Effect::Audit(event)) = synced.iter().find(|e| matches!(e, Effect::Audit(_))) else { unreachable!() };
    assert_eq!(event.detail["took_ms"], 200);
    assert!(audited(&r.ack(&ack("a", &version, None), 300).unwrap()).is_empty(), "once");
    let views = r.proxies();
    assert!(views.iter().all(|p| p.synced && p.nack.is_none()), "{views:?}");
    assert!(matches!(r.ack(&ack("ghost", &version, None), 0), Err(FleetError::UnknownProxy(_))));
    assert!(matches!(r.ack(&ack("a", "", None), 0), Err(FleetError::InvalidAck(_))));
}

#[test]
fn sync_is_judged_from_where_the_last_look_found_a_proxy_lagging_and_round_to_those_before() {
    let mut r = leading();
    r.set_mesh(mesh("r1"), 0);
    for id in ["a", "b", "c"] {
        r.connect(reg(id, "inventory", "10.0.0.1:4143"), 0);
    }
    let version = r.snapshot().unwrap().version_for("inventory").unwrap().to_string();
    assert!(audited(&r.ack(&ack("c", &version, None), 10).unwrap()).is_empty(), "a and b lag");
    assert!(audited(&r.ack(&ack("a", &version, None), 20).unwrap()).is_empty(), "b lags");
    // A proxy ordered before the last look's start joins: the next look comes round to it.
    r.connect(reg("0", "inventory", "10.0.0.1:4143"), 30);
    assert!(audited(&r.ack(&ack("b", &version, None), 40).unwrap()).is_empty(), "0 lags");
    let synced = r.ack(&ack("0", &version, None), 50).unwrap();
    assert_eq!(audited(&synced), ["revision.synced"]);
    let Some(Effect::Audit(event)) = synced.iter().find(|e| matches!(e, Effect::Audit(_))) else { unreachable!() };
    assert_eq!(event.detail["proxies"], 4);
}

#[test]
fn a_dropped_proxy_stays_an_endpoint_until_forgotten_and_a_silent_one_is_dropped() {
    let mut r = leading();
    let (stream, _) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    r.connect(reg("hung", "inventory", "10.0.0.2:4143"), 0);
    r.disconnect("a", stream, 1_000);
    r.heartbeat("hung", 1_000);
    let hung = r.sweep(1_000 + FORGET_AFTER.as_millis() as i64 - 1);
    assert!(hung.contains(&Effect::Forget("hung".into())));
    assert!(hung.contains(&Effect::Hung("hung".into(), FORGET_AFTER.as_millis() as i64 - 1)), "said why: {hung:?}");
    let effects = r.sweep(1_000 + FORGET_AFTER.as_millis() as i64 + 1);
    assert_eq!(audited(&effects), ["proxy.left"]);
    assert!(effects.contains(&Effect::Forget("a".into())) && effects.contains(&Effect::PublishSoon));
    assert!(r.service_of("a").is_none() && r.service_of("hung").is_none());
    assert!(r.sweep(i64::MAX / 2).is_empty(), "nothing left to forget");
}

#[test]
fn after_a_restart_configs_wait_for_the_previous_fleet() {
    let mut r = leading();
    r.await_fleet(["a".to_string(), "b".to_string()]);
    let (_, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    assert!(!effects.contains(&Effect::Release));
    let (_, effects) = r.connect(reg("b", "inventory", "10.0.0.2:4143"), 0);
    assert!(effects.contains(&Effect::Publish) && effects.contains(&Effect::Release), "{effects:?}");
    let mut late = leading();
    late.await_fleet(["gone".to_string()]);
    let (missing, effects) = late.stop_waiting();
    assert_eq!((missing, effects), (vec!["gone".to_string()], vec![Effect::Publish]));
}

#[test]
fn a_new_certificate_reaches_callers_with_the_next_endpoints() {
    let mut r = leading();
    r.set_mesh(mesh("r1"), 0);
    assert_eq!(r.certified("a", "spiffe://t/svc/inventory", 10), [Effect::Changed], "not registered yet");
    r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    r.connect(reg("caller", "storefront", "10.0.0.9:4143"), 0);
    let line = r.snapshot().unwrap().line_for("storefront").unwrap();
    assert!(String::from_utf8_lossy(&line).contains("spiffe://t/svc/inventory"), "{}", String::from_utf8_lossy(&line));
    let renewed = r.certified("a", "spiffe://t/svc/inventory", 20);
    assert!(!renewed.contains(&Effect::PublishSoon), "the same identity: {renewed:?}");
    assert!(
        renewed.iter().any(|e| matches!(e, Effect::Share(_, s) if s.cert_expires == Some(20))),
        "its expiry is told"
    );
    let other = r.certified("a", "spiffe://t/svc/other", 20);
    assert_eq!(other.first(), Some(&Effect::PublishSoon));
    assert!(r.publish_soon() && !r.publish_soon(), "one debounced publish at a time");
    r.snapshot();
    assert!(!r.publish_pending());
}

#[test]
fn a_version_names_the_content_the_same_on_every_replica() {
    let fill = |r: &mut Registry| {
        r.set_mesh(mesh("r1"), 0);
        r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
        r.connect(reg("b", "storefront", "10.0.0.2:4143"), 0);
    };
    let (mut one, mut two) = (leading(), leading());
    fill(&mut one);
    fill(&mut two);
    let version = one.snapshot().unwrap().version_for("storefront").unwrap().to_string();
    assert!(version.starts_with("r1."), "{version}");
    assert_eq!(
        two.snapshot().unwrap().version_for("storefront").unwrap().to_string(),
        version,
        "another replica, the same inputs"
    );
    assert_eq!(
        one.snapshot().unwrap().version_for("storefront").unwrap().to_string(),
        version,
        "published again with nothing changed"
    );
    one.connect(reg("c", "inventory", "10.0.0.3:4143"), 1);
    assert_ne!(
        one.snapshot().unwrap().version_for("storefront").unwrap().to_string(),
        version,
        "a new endpoint, a new version"
    );
    let mut reweighted = mesh("r1");
    reweighted.services.get_mut("inventory").unwrap().versions.push("v2".into());
    two.set_mesh(reweighted, 1);
    assert_ne!(
        two.snapshot().unwrap().version_for("storefront").unwrap().to_string(),
        version,
        "the same revision, other content"
    );
}

fn elsewhere(id: &str, service: &str, addr: &str, connected: bool) -> Member {
    Member {
        replica: "other".into(),
        registration: reg(id, service, addr),
        status: MemberStatus { identity: Some(format!("spiffe://t/svc/{service}")), ..Default::default() },
        connected,
    }
}

fn endpoint_addrs(r: &mut Registry, service: &str) -> Vec<String> {
    let snapshot = r.snapshot().unwrap();
    let line = snapshot.line_for(service).unwrap();
    let trellis_model::fleet::StreamMessage::Config(c) = serde_json::from_slice(&line).unwrap() else { unreachable!() };
    let mut addrs: Vec<String> = c.endpoints.values().flatten().map(|e| e.addr.clone()).collect();
    addrs.sort();
    addrs
}

#[test]
fn the_whole_fleet_is_sent_whichever_replica_each_proxy_is_connected_to() {
    let mut r = Registry::default();
    r.set_mesh(mesh("r1"), 0);
    let (stream, effects) = r.connect(reg("here", "inventory", "10.0.0.1:4143"), 0);
    assert!(audited(&effects).is_empty(), "only the leader records who joins");
    r.connect(reg("caller", "storefront", "10.0.0.9:4143"), 0);
    let effects = r.set_remote(vec![elsewhere("there", "inventory", "10.0.0.2:4143", true)], 10);
    assert!(effects.contains(&Effect::PublishSoon), "a new endpoint elsewhere is endpoint churn");
    assert_eq!(endpoint_addrs(&mut r, "storefront"), ["10.0.0.1:4143", "10.0.0.2:4143"]);
    let views = r.proxies();
    assert_eq!(views.len(), 3);
    assert_eq!(views.iter().find(|p| p.id == "there").unwrap().replica.as_deref(), Some("other"));

    // "here" moves to the other replica at a new address: one endpoint, as it is there.
    r.disconnect("here", stream, 20);
    let moved = elsewhere("here", "inventory", "10.0.0.3:4143", true);
    r.set_remote(vec![elsewhere("there", "inventory", "10.0.0.2:4143", true), moved], 30);
    assert_eq!(endpoint_addrs(&mut r, "storefront"), ["10.0.0.2:4143", "10.0.0.3:4143"]);
    assert_eq!(r.proxies().len(), 3, "each proxy once");
    // The same inputs on another replica give the same version.
    assert_eq!(
        r.snapshot().unwrap().version_for("storefront").unwrap().to_string(),
        r.snapshot().unwrap().version_for("storefront").unwrap().to_string()
    );
}

#[test]
fn a_row_another_replica_wrote_late_for_a_proxy_connected_here_is_written_again() {
    let mut r = Registry::default();
    r.set_mesh(mesh("r1"), 0);
    let (stream, _) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    let shares = |effects: &[Effect]| {
        effects.iter().filter(|e| matches!(e, Effect::Share(reg, _) if reg.proxy_id == "a")).count()
    };
    // The other replica's row, connected or closed since, says "a" is there; its stream is here.
    for connected in [true, false] {
        let effects = r.set_remote(vec![elsewhere("a", "inventory", "10.0.0.1:4143", connected)], 10);
        assert_eq!(shares(&effects), 1, "connected elsewhere: {connected}");
    }
    // Once its stream here has closed, the other replica's row is right and is left alone.
    r.disconnect("a", stream, 20);
    let effects = r.set_remote(vec![elsewhere("a", "inventory", "10.0.0.1:4143", true)], 30);
    assert_eq!(shares(&effects), 0);
}

#[test]
fn the_leader_records_who_joins_and_leaves_the_whole_fleet_and_moves_are_neither() {
    let mut r = leading();
    let effects = r.set_remote(vec![elsewhere("p", "inventory", "10.0.0.2:4143", true)], 0);
    assert_eq!(audited(&effects), ["proxy.joined"]);
    // The proxy moves here from the other replica: not a join.
    let (stream, effects) = r.connect(reg("p", "inventory", "10.0.0.2:4143"), 10);
    assert!(audited(&effects).is_empty(), "{effects:?}");
    assert!(audited(&r.set_remote(vec![], 20)).is_empty(), "still here");
    r.disconnect("p", stream, 30);
    let effects = r.sweep(30 + FORGET_AFTER.as_millis() as i64 + 1);
    assert_eq!(audited(&effects), ["proxy.left"]);

    // A follower keeps count quietly: when it leads, the fleet it knows does not join again.
    let mut f = Registry::default();
    f.set_remote(vec![elsewhere("q", "inventory", "10.0.0.4:4143", true)], 0);
    f.set_leads(true);
    assert!(audited(&f.set_remote(vec![elsewhere("q", "inventory", "10.0.0.4:4143", true)], 10)).is_empty());
}

#[test]
fn after_a_restart_a_proxy_connected_to_another_replica_is_not_waited_for() {
    let mut r = leading();
    r.await_fleet(["p".to_string()]);
    let effects = r.set_remote(vec![elsewhere("p", "inventory", "10.0.0.2:4143", true)], 0);
    assert!(effects.contains(&Effect::Release), "{effects:?}");
}

#[test]
fn a_lone_replica_writes_who_is_connected_but_not_each_ack() {
    for alone in [false, true] {
        let mut r = Registry::new(alone);
        r.set_leads(true);
        r.set_mesh(mesh("r1"), 0);
        let (_, joined) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
        let shares = |effects: &[Effect]| effects.iter().filter(|e| matches!(e, Effect::Share(..))).count();
        assert_eq!(shares(&joined), 1, "the row a restart waits for, alone or not");
        let acked = r.ack(&ack("a", "r1.1", None), 10).unwrap();
        let nacked = r.ack(&ack("a", "r1.2", Some("bad")), 20).unwrap();
        let expected = if alone { 0 } else { 1 };
        assert_eq!((shares(&acked), shares(&nacked)), (expected, expected), "alone: {alone}");
        assert_eq!(audited(&nacked), ["proxy.nacked"], "a NACK is audited either way");
    }
}
