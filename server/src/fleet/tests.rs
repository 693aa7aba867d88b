use super::*;
use crate::store::Store;
use trellis_model::ServiceConfig;

async fn fleet() -> Fleet {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    Fleet::new(Audit::start(store), || {})
}

fn reg(id: &str, service: &str, version: &str, addr: &str) -> Registration {
    Registration {
        proxy_id: id.into(),
        service: service.into(),
        version: version.into(),
        inbound_addr: addr.into(),
        admin_addr: "127.0.0.1:1".into(),
        proxy_version: "test".into(),
    }
}

fn mesh(revision: &str) -> MeshConfig {
    let svc = ServiceConfig::new("inventory", &["v1"], vec![]);
    MeshConfig { revision: revision.into(), services: [("inventory".to_string(), svc)].into(), ..Default::default() }
}

fn config(fleet: &Fleet) -> ProxyConfig {
    let snap = fleet.subscribe().borrow().clone();
    match serde_json::from_slice::<StreamMessage>(&snap.line).unwrap() {
        StreamMessage::Config(c) => c,
        StreamMessage::Ping => panic!("expected a config"),
    }
}

#[tokio::test]
async fn nothing_is_published_before_the_first_valid_revision() {
    let fleet = fleet().await;
    let _g = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    assert!(fleet.subscribe().borrow().line.is_empty());
    fleet.set_mesh(mesh("r1"));
    let c = config(&fleet);
    assert_eq!(c.revision, "r1");
    assert_eq!(c.endpoints["inventory"][0].addr, "127.0.0.1:1000");
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
    fleet.set_mesh(mesh("r2"));
    let v2 = config(&fleet).version;
    fleet.ack(&Ack { proxy_id: "a".into(), version: v2, error: Some("bad".into()) }).unwrap();
    let p = &fleet.proxies()[0];
    assert_eq!((p.synced, p.nack.as_deref(), p.applied_revision.as_deref()), (false, Some("bad"), Some("r1")));
    assert!(matches!(
        fleet.ack(&Ack { proxy_id: "ghost".into(), version, error: None }),
        Err(FleetError::UnknownProxy(_))
    ));
}

#[tokio::test]
async fn a_dropped_stream_keeps_the_endpoint_until_the_grace_period_ends() {
    let fleet = fleet().await;
    fleet.set_mesh(mesh("r1"));
    let guard = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    drop(guard);
    assert!(fleet.proxies().is_empty(), "disconnected proxies are not listed as live");
    fleet.sweep_at(crate::now_ms());
    assert_eq!(config(&fleet).endpoints["inventory"].len(), 1);
    fleet.sweep_at(crate::now_ms() + FORGET_AFTER.as_millis() as i64 + 1);
    assert!(!config(&fleet).endpoints.contains_key("inventory"));
}

#[tokio::test]
async fn a_reconnect_supersedes_the_old_stream() {
    let fleet = fleet().await;
    fleet.set_mesh(mesh("r1"));
    let old = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    let _new = fleet.connected(reg("a", "inventory", "v1", "127.0.0.1:1000"));
    drop(old);
    assert_eq!(fleet.proxies().len(), 1, "the old stream closing must not mark the proxy gone");
}
