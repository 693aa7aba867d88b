use super::*;
use crate::store::Store;
use std::time::Duration;
use trellis_model::ServiceConfig;

async fn fleet() -> Fleet {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    // The spool directory outlives the test's writer; the OS cleans its temp dir.
    let spool = std::env::temp_dir().join(format!("trellis-fleet-test-{:x}", fastrand::u64(..)));
    Fleet::new("test".into(), Audit::start(store, &spool).unwrap(), None, Duration::ZERO, || {})
}

pub(super) fn reg(id: &str, service: &str, version: &str, addr: &str) -> Registration {
    Registration {
        proxy_id: id.into(),
        service: service.into(),
        version: version.into(),
        inbound_addr: addr.into(),
        admin_addr: "127.0.0.1:1".into(),
        incremental: false,
        resume: None,
        max_ping_every_s: None,
        proxy_version: "test".into(),
    }
}

pub(super) fn mesh(revision: &str) -> MeshConfig {
    let services = ["inventory", "storefront"].map(|n| (n.to_string(), ServiceConfig::new(n, &["v1"], vec![])));
    MeshConfig { revision: revision.into(), services: services.into(), ..Default::default() }
}

/// The config a proxy of `inventory` would be sent.
fn config(fleet: &Fleet) -> trellis_model::ProxyConfig {
    config_for(fleet, "inventory")
}

fn config_for(fleet: &Fleet, service: &str) -> trellis_model::ProxyConfig {
    let snap = fleet.snapshot();
    let line = snap.line_for(service).expect("a line for every served service");
    match serde_json::from_slice::<StreamMessage>(&line).unwrap() {
        StreamMessage::Config(c) => c,
        other => panic!("expected a config, not {other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_published_before_the_first_valid_revision() {
    let fleet = fleet().await;
    let _g = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    let _c = fleet.connected(reg("c", "storefront", "v1", "127.0.0.1:2000"));
    assert!(fleet.snapshot().slices.is_empty());
    fleet.set_mesh(mesh("r1"));
    let c = config_for(&fleet, "storefront");
    assert_eq!(c.revision, "r1");
    assert_eq!(c.endpoints["inventory"][0].addr, "127.0.0.1:1000");
    assert!(!config(&fleet).endpoints.contains_key("inventory"), "a proxy is not sent its own peers");
}

#[tokio::test]
async fn sync_status_follows_acks_and_nacks() {
    let fleet = fleet().await;
    fleet.set_mesh(mesh("r1"));
    let _g = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    let version = config(&fleet).version;
    assert!(!fleet.proxies()[0].synced);
    fleet.ack(&Ack { proxy_id: "a".into(), version: version.clone(), error: None }).unwrap();
    assert!(fleet.proxies()[0].synced);
    assert_eq!(fleet.proxies()[0].lagging_since, None);
    fleet.set_mesh(mesh("r2"));
    let v2 = config(&fleet).version;
    fleet.ack(&Ack { proxy_id: "a".into(), version: v2, error: Some("bad".into()) }).unwrap();
    let p = &fleet.proxies()[0];
    assert_eq!((p.synced, p.nack.as_deref(), p.applied_revision.as_deref()), (false, Some("bad"), Some("r1")));
    assert!(p.lagging_since.is_some_and(|t| t <= crate::now_ms()), "lags since r2 was applied");
    assert!(matches!(
        fleet.ack(&Ack { proxy_id: "ghost".into(), version, error: None }),
        Err(FleetError::UnknownProxy(_))
    ));
}

#[tokio::test]
async fn a_dropped_stream_keeps_the_endpoint_until_the_grace_period_ends() {
    let fleet = fleet().await;
    fleet.set_mesh(mesh("r1"));
    let _caller = fleet.connected(reg("c", "storefront", "v1", "127.0.0.1:2000"));
    let guard = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    drop(guard);
    assert_eq!(fleet.proxies().len(), 1, "disconnected proxies are not listed as live");
    fleet.sweep_at(crate::now_ms());
    assert_eq!(config_for(&fleet, "storefront").endpoints["inventory"].len(), 1);
    let later = crate::now_ms() + FORGET_AFTER.as_millis() as i64 + 1;
    fleet.heartbeat_at("c", later);
    fleet.sweep_at(later);
    assert!(!config_for(&fleet, "storefront").endpoints.contains_key("inventory"));
}

#[tokio::test]
async fn a_reconnect_supersedes_the_old_stream() {
    let fleet = fleet().await;
    fleet.set_mesh(mesh("r1"));
    let old = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    let new = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    assert!(!old.serves() && new.serves(), "the old stream ends at its next ping");
    drop(old);
    assert_eq!(fleet.proxies().len(), 1, "the old stream closing must not mark the proxy gone");
}

#[tokio::test]
async fn a_proxy_that_stops_heartbeating_is_dropped_from_endpoints() {
    let fleet = fleet().await;
    fleet.set_mesh(mesh("r1"));
    let _caller = fleet.connected(reg("c", "storefront", "v1", "127.0.0.1:2000"));
    // Its stream stays open, but it goes silent.
    let hung = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    let later = crate::now_ms() + HEARTBEAT_TIMEOUT.as_millis() as i64 + 1;
    fleet.heartbeat_at("c", later);
    fleet.sweep_at(later - 5_000);
    assert_eq!(config_for(&fleet, "storefront").endpoints["inventory"].len(), 1, "still within the timeout");
    fleet.sweep_at(later);
    assert!(!config_for(&fleet, "storefront").endpoints.contains_key("inventory"));
    assert!(fleet.heartbeat("a").is_none(), "forgotten");
    assert!(!hung.serves(), "its stream ends, so that a proxy still alive registers again");
}

#[tokio::test]
async fn a_publish_wakes_only_the_streams_whose_slice_changed() {
    let fleet = fleet().await;
    fleet.set_mesh(mesh("r1"));
    let _a = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    let _c = fleet.connected(reg("c", "storefront", "v1", "127.0.0.1:2000"));
    let inventory = fleet.subscribe_slice("inventory");
    let mut storefront = fleet.subscribe_slice("storefront");
    assert!(inventory.borrow().is_some() && storefront.borrow().is_some(), "a stream starts from the current slice");

    // Another inventory proxy changes what storefronts are sent, not what inventories are.
    let _b = fleet.connected(reg("b", "inventory", "v1", "127.0.0.1:1001"));
    assert!(storefront.has_changed().unwrap(), "the storefronts' slice changed");
    assert!(!inventory.has_changed().unwrap(), "the inventories' slice did not: they are not woken");
    let line = storefront.borrow_and_update().as_ref().unwrap().full();
    let StreamMessage::Config(c) = serde_json::from_slice(&line).unwrap() else { panic!("a config") };
    assert_eq!(c.endpoints["inventory"].len(), 2);

    // A new revision is a new version of every slice.
    fleet.set_mesh(mesh("r2"));
    assert!(inventory.has_changed().unwrap() && storefront.has_changed().unwrap());
}

#[test]
fn a_large_fleet_is_pinged_less_often_up_to_ten_seconds() {
    assert_eq!(ping_every_s(0), 2);
    assert_eq!(ping_every_s(2_500), 2);
    assert_eq!(ping_every_s(2_501), 3);
    assert_eq!(ping_every_s(10_000), 8);
    assert_eq!(ping_every_s(usize::MAX), 10);
    assert!(10_000 / ping_every_s(10_000) as usize <= PINGS_PER_S);
    // The proxy's patience covers three missed pings at the longest interval it accepts.
    assert_eq!(trellis_model::fleet::idle_timeout(2), Duration::from_millis(6_500));
}

#[test]
fn a_large_fleet_is_given_longer_before_a_silent_proxy_counts_as_hung() {
    assert_eq!(hung_after(1), HEARTBEAT_TIMEOUT);
    assert_eq!(hung_after(10_000), Duration::from_secs(20), "busy joins leave reports waiting");
    assert_eq!(hung_after(usize::MAX), Duration::from_secs(30));
}
