//! The incremental protocol under churn: random sequences of joins, leaves, reconnects (with
//! the version the proxy runs), certificates, commits and streams that fall behind, against
//! the registry and the streams' choice of what to send. After every publish, each proxy's
//! view (its first full config with every delta since applied) equals the full config a new
//! proxy of its service would be sent at that moment.

use super::*;
use crate::fleet::{FORGET_AFTER, Snapshot};
use proptest::prelude::*;
use trellis_model::config::{AccessMode, AccessRuleConfig};
use trellis_model::fleet::StreamMessage;
use trellis_model::{ProxyConfig, ServiceConfig};

const SERVICES: [&str; 4] = ["web", "cart", "pay", "stock"];

#[derive(Clone, Debug)]
enum Op {
    Join {
        proxy: usize,
        service: usize,
        addr: u8,
        incremental: bool,
    },
    Leave {
        proxy: usize,
    },
    Reconnect {
        proxy: usize,
    },
    Certify {
        proxy: usize,
        identity: u8,
    },
    /// A new revision: who may call whom and each service's versions.
    Commit {
        variant: u8,
    },
    /// The proxy's stream misses the next `publishes` publishes, then catches up.
    Lag {
        proxy: usize,
        publishes: u8,
    },
    /// Disconnected proxies are forgotten.
    Sweep,
    Publish,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..10usize, 0..4usize, 0..3u8, any::<bool>())
            .prop_map(|(proxy, service, addr, incremental)| Op::Join { proxy, service, addr, incremental }),
        1 => (0..10usize).prop_map(|proxy| Op::Leave { proxy }),
        1 => (0..10usize).prop_map(|proxy| Op::Reconnect { proxy }),
        1 => (0..10usize, 0..2u8).prop_map(|(proxy, identity)| Op::Certify { proxy, identity }),
        1 => (0..6u8).prop_map(|variant| Op::Commit { variant }),
        1 => (0..10usize, 1..20u8).prop_map(|(proxy, publishes)| Op::Lag { proxy, publishes }),
        1 => Just(Op::Sweep),
        3 => Just(Op::Publish),
    ]
}

/// Revision `variant`: some services admit only some callers, or nobody; versions vary.
fn mesh(variant: u8) -> MeshConfig {
    let services = SERVICES.iter().enumerate().map(|(i, name)| {
        let versions: &[&str] = if (variant as usize + i).is_multiple_of(3) { &["v1", "v2"] } else { &["v1"] };
        let mut svc = ServiceConfig::new(name, versions, vec![]);
        match (variant as usize + i) % 4 {
            0 => svc.access.rules = vec![AccessRuleConfig { from: vec!["web".into()], paths: vec![], methods: vec![] }],
            1 => svc.access.mode = AccessMode::Deny,
            _ => {}
        }
        (name.to_string(), svc)
    });
    MeshConfig { revision: format!("rev{variant}"), services: services.collect(), ..Default::default() }
}

/// A simulated proxy: its registration, its stream's state on the control plane, its view.
struct Proxy {
    reg: Registration,
    stream: Option<u64>,
    sent: Option<String>,
    view: Option<ProxyConfig>,
    lag: u8,
}

/// Sends a stream what it would be sent now, and applies it as a proxy does.
fn deliver(snapshot: &Snapshot, p: &mut Proxy) -> Result<(), TestCaseError> {
    let next = snapshot.slices.get(&p.reg.service).and_then(|s| s.next(&mut p.sent, p.reg.incremental));
    let Some(lines) = next else { return Ok(()) };
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice(line).map_err(|e| TestCaseError::fail(e.to_string()))? {
            StreamMessage::Config(c) => p.view = Some(c),
            StreamMessage::Delta(d) => {
                prop_assert!(p.reg.incremental, "a delta to a proxy that takes none");
                let view = p.view.as_ref().ok_or_else(|| TestCaseError::fail("a delta before any config"))?;
                p.view = Some(view.apply(&d).map_err(|gap| TestCaseError::fail(gap.to_string()))?);
            }
            StreamMessage::Ping => {}
            answer => return Err(TestCaseError::fail(format!("a slice sent an answer line: {answer:?}"))),
        }
    }
    Ok(())
}

fn full(snapshot: &Snapshot, service: &str) -> ProxyConfig {
    match serde_json::from_slice(&snapshot.line_for(service).unwrap()).unwrap() {
        StreamMessage::Config(c) => c,
        other => panic!("{other:?}"),
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut r = Registry::default();
    r.set_mesh(mesh(0), 0);
    let mut proxies: BTreeMap<usize, Proxy> = BTreeMap::new();
    let mut now = 0;
    let mut checked = 0;
    for op in ops.into_iter().chain([Op::Lag { proxy: usize::MAX, publishes: 0 }, Op::Publish]) {
        now += 1;
        match op {
            Op::Join { proxy, service, addr, incremental } => {
                let id = format!("p{proxy}");
                let mut reg =
                    crate::fleet::tests::reg(&id, SERVICES[service], "v1", &format!("10.0.{addr}.{proxy}:4143"));
                reg.incremental = incremental;
                // A proxy known here keeps its service: a proxy id names one sidecar.
                if let Some(p) = proxies.get(&proxy) {
                    reg.service.clone_from(&p.reg.service);
                    reg.resume = p.view.as_ref().map(|v| v.version.clone());
                }
                let (stream, _) = r.connect(reg.clone(), now);
                let old = proxies.get(&proxy).and_then(|p| p.view.clone());
                let sent = reg.resume.clone();
                proxies.insert(proxy, Proxy { reg, stream: Some(stream), sent, view: old, lag: 0 });
            }
            Op::Leave { proxy } => {
                if let Some(p) = proxies.get_mut(&proxy)
                    && let Some(stream) = p.stream.take()
                {
                    r.disconnect(&p.reg.proxy_id, stream, now);
                }
            }
            Op::Reconnect { proxy } => {
                if let Some(p) = proxies.get_mut(&proxy)
                    && let Some(old) = p.stream
                {
                    let reg = Registration { resume: p.view.as_ref().map(|v| v.version.clone()), ..p.reg.clone() };
                    let (stream, _) = r.connect(reg.clone(), now);
                    r.disconnect(&reg.proxy_id, old, now);
                    (p.stream, p.sent, p.lag) = (Some(stream), reg.resume, 0);
                }
            }
            Op::Certify { proxy, identity } => {
                r.certified(&format!("p{proxy}"), &format!("spiffe://t/svc/id{identity}"), now + 1_000_000);
            }
            Op::Commit { variant } => {
                r.set_mesh(mesh(variant), now);
            }
            Op::Lag { proxy, publishes } => {
                if let Some(p) = proxies.get_mut(&proxy) {
                    p.lag = publishes;
                }
                if proxy == usize::MAX {
                    proxies.values_mut().for_each(|p| p.lag = 0);
                }
            }
            Op::Sweep => {
                now += FORGET_AFTER.as_millis() as i64 + 1;
                for (i, p) in &proxies {
                    if p.stream.is_some() {
                        r.heartbeat(&format!("p{i}"), now);
                    }
                }
                r.sweep(now);
                // A forgotten proxy that comes back is a new one to the control plane.
                proxies.retain(|_, p| p.stream.is_some());
            }
            Op::Publish => {
                let snapshot = r.snapshot().unwrap();
                for p in proxies.values_mut().filter(|p| p.stream.is_some()) {
                    if p.lag > 0 {
                        p.lag -= 1;
                        continue;
                    }
                    deliver(&snapshot, p)?;
                    let expected = full(&snapshot, &p.reg.service);
                    prop_assert_eq!(p.view.as_ref(), Some(&expected), "proxy {}", p.reg.proxy_id);
                    checked += 1;
                }
            }
        }
    }
    prop_assert!(checked > 0 || proxies.values().all(|p| p.stream.is_none()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_proxy_view_equals_the_full_config_it_would_be_sent(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
