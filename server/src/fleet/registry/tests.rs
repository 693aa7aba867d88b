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

fn ack(id: &str, version: &str, error: Option<&str>) -> Ack {
    Ack { proxy_id: id.into(), version: version.into(), error: error.map(str::to_string) }
}

#[test]
fn nothing_is_published_before_the_first_revision_and_a_revision_publishes_at_once() {
    let mut r = Registry::default();
    let (_, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    assert_eq!(audited(&effects), ["proxy.joined"]);
    assert!(effects.contains(&Effect::Remember { proxy_id: "a".into(), service: "inventory".into() }));
    assert!(effects.contains(&Effect::PublishSoon), "a new endpoint is endpoint churn: debounced");
    assert!(r.snapshot().is_none());
    assert_eq!(r.set_mesh(mesh("r1"), 10), [Effect::Publish]);
    let snapshot = r.snapshot().unwrap();
    assert_eq!(snapshot.revision, "r1");
    assert!(snapshot.line_for("inventory").is_some() && snapshot.line_for("storefront").is_none(), "served only");
}

#[test]
fn a_reconnect_on_the_same_address_is_no_endpoint_change_and_an_old_streams_end_is_ignored() {
    let mut r = Registry::default();
    let (first, _) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    let (second, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 5);
    assert!(
        audited(&effects).is_empty() && effects.contains(&Effect::Changed) && !effects.contains(&Effect::PublishSoon)
    );
    assert!(r.disconnect("a", first, 6).is_empty(), "the newer stream serves the proxy");
    assert_eq!(r.disconnect("a", second, 7), [Effect::Changed]);
    let (_, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 8);
    assert!(effects.contains(&Effect::PublishSoon), "back from a disconnect: an endpoint again");
}

#[test]
fn sync_is_audited_once_per_revision_and_a_nack_once_per_reason() {
    let mut r = Registry::default();
    r.set_mesh(mesh("r1"), 0);
    r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    r.connect(reg("b", "storefront", "10.0.0.2:4143"), 0);
    let version = r.snapshot().unwrap().version;
    assert!(audited(&r.ack(&ack("a", &version, None), 100).unwrap()).is_empty(), "one of two");
    let nacked = r.ack(&ack("b", &version, Some("regex too big")), 150).unwrap();
    assert_eq!(audited(&nacked), ["proxy.nacked"]);
    assert!(audited(&r.ack(&ack("b", &version, Some("regex too big")), 160).unwrap()).is_empty());
    let synced = r.ack(&ack("b", &version, None), 200).unwrap();
    assert_eq!(audited(&synced), ["revision.synced"]);
    let Some(Effect::Audit(event)) = synced.first() else { unreachable!() };
    assert_eq!(event.detail["took_ms"], 200);
    assert!(audited(&r.ack(&ack("a", &version, None), 300).unwrap()).is_empty(), "once");
    let views = r.proxies();
    assert!(views.iter().all(|p| p.synced && p.nack.is_none()), "{views:?}");
    assert!(matches!(r.ack(&ack("ghost", &version, None), 0), Err(FleetError::UnknownProxy(_))));
    assert!(matches!(r.ack(&ack("a", "", None), 0), Err(FleetError::InvalidAck(_))));
}

#[test]
fn a_dropped_proxy_stays_an_endpoint_until_forgotten_and_a_silent_one_is_dropped() {
    let mut r = Registry::default();
    let (stream, _) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    r.connect(reg("hung", "inventory", "10.0.0.2:4143"), 0);
    r.disconnect("a", stream, 1_000);
    r.heartbeat("hung", 1_000);
    assert!(r.sweep(1_000 + FORGET_AFTER.as_millis() as i64 - 1).iter().any(|e| *e == Effect::Forget("hung".into())));
    let effects = r.sweep(1_000 + FORGET_AFTER.as_millis() as i64 + 1);
    assert_eq!(audited(&effects), ["proxy.left"]);
    assert!(effects.contains(&Effect::Forget("a".into())) && effects.contains(&Effect::PublishSoon));
    assert!(r.service_of("a").is_none() && r.service_of("hung").is_none());
    assert!(r.sweep(i64::MAX / 2).is_empty(), "nothing left to forget");
}

#[test]
fn after_a_restart_configs_wait_for_the_previous_fleet() {
    let mut r = Registry::default();
    r.await_fleet(["a".to_string(), "b".to_string()]);
    let (_, effects) = r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    assert!(!effects.contains(&Effect::Release));
    let (_, effects) = r.connect(reg("b", "inventory", "10.0.0.2:4143"), 0);
    assert!(effects.contains(&Effect::Publish) && effects.contains(&Effect::Release), "{effects:?}");
    let mut late = Registry::default();
    late.await_fleet(["gone".to_string()]);
    let (missing, effects) = late.stop_waiting();
    assert_eq!((missing, effects), (vec!["gone".to_string()], vec![Effect::Publish]));
}

#[test]
fn a_new_certificate_reaches_callers_with_the_next_endpoints() {
    let mut r = Registry::default();
    r.set_mesh(mesh("r1"), 0);
    assert_eq!(r.certified("a", "spiffe://t/svc/inventory", 10), [Effect::Changed], "not registered yet");
    r.connect(reg("a", "inventory", "10.0.0.1:4143"), 0);
    r.connect(reg("caller", "storefront", "10.0.0.9:4143"), 0);
    let line = r.snapshot().unwrap().line_for("storefront").unwrap();
    assert!(String::from_utf8_lossy(&line).contains("spiffe://t/svc/inventory"), "{}", String::from_utf8_lossy(&line));
    assert_eq!(r.certified("a", "spiffe://t/svc/inventory", 20), [Effect::Changed], "the same identity");
    assert_eq!(r.certified("a", "spiffe://t/svc/other", 20), [Effect::PublishSoon, Effect::Changed]);
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
    let (mut one, mut two) = (Registry::default(), Registry::default());
    fill(&mut one);
    fill(&mut two);
    let version = one.snapshot().unwrap().version;
    assert!(version.starts_with("r1."), "{version}");
    assert_eq!(two.snapshot().unwrap().version, version, "another replica, the same inputs");
    assert_eq!(one.snapshot().unwrap().version, version, "published again with nothing changed");
    one.connect(reg("c", "inventory", "10.0.0.3:4143"), 1);
    assert_ne!(one.snapshot().unwrap().version, version, "a new endpoint, a new version");
    let mut reweighted = mesh("r1");
    reweighted.services.get_mut("inventory").unwrap().versions.push("v2".into());
    two.set_mesh(reweighted, 1);
    assert_ne!(two.snapshot().unwrap().version, version, "the same revision, other content");
}
