//! The fleet: which proxies exist, what each runs, and the config each should run.
//!
//! Every proxy holds one stream (`POST /fleet/v1/stream`); the fleet publishes a snapshot
//! (mesh config + endpoints) through a `watch` channel and each stream sends it on change, so
//! a new revision reaches every proxy at once. Proxies ACK or NACK each version.

pub mod slice;
pub mod tls;

use crate::audit::Audit;
use crate::sync::Locked;
use bytes::Bytes;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use trellis_model::fleet::{Ack, Registration, StreamMessage};
use trellis_model::{Endpoint, MeshConfig};
use trellis_web::api::ProxyView;

/// A proxy whose stream dropped stays an endpoint this long: a control-plane hiccup must not
/// take healthy endpoints out of rotation. After it, the proxy is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);
/// Endpoint changes within this window go out as one snapshot (Istio debounces pushes alike).
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// A proxy whose stream is open but which has not reported for this long is hung: it is
/// dropped from endpoints at once (proxies report every two seconds).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Fleet(Arc<Shared>);

struct Shared {
    inner: Mutex<Inner>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    on_change: Box<dyn Fn() + Send + Sync>,
    audit: Audit,
    /// Where fleet membership is remembered across restarts; `None` in unit tests.
    store: Option<crate::store::Store>,
    /// False while waiting for the previous fleet to reconnect after a restart: streams send
    /// nothing, so proxies keep their last config instead of a half-empty one.
    released: watch::Sender<bool>,
    /// How long endpoint changes are gathered before one publish (zero: at once).
    debounce: Duration,
}

#[derive(Default)]
struct Inner {
    mesh: Option<Arc<MeshConfig>>,
    proxies: BTreeMap<String, Entry>,
    generation: u64,
    next_stream: u64,
    /// Proxies known before a restart that have not reconnected yet.
    awaited: std::collections::HashSet<String>,
    /// An endpoint change is waiting for the debounced publish.
    publish_pending: bool,
    /// When the current revision was applied: a proxy not running it lags since then (or
    /// since it joined, if later).
    revision_since: i64,
    boot_ms: i64,
    /// The last revision audited as synced on every proxy.
    synced_audited: Option<String>,
    /// Each proxy's certificate, by proxy id. Proxies certify before they register, so this
    /// outlives and precedes registry entries (bounded by `sweep`).
    certs: BTreeMap<String, Cert>,
}

struct Cert {
    identity: String,
    /// Unix ms.
    not_after: i64,
}

struct Entry {
    reg: Registration,
    /// The stream currently serving this proxy; a reconnect replaces it.
    stream: Option<u64>,
    disconnected_at: Option<i64>,
    last_seen: i64,
    joined_at: i64,
    acked: Option<String>,
    nack: Option<String>,
}

/// What the streams send: one encoded config line per service, shared by all of its proxies.
pub struct Snapshot {
    pub version: String,
    pub revision: String,
    /// Service → one NDJSON line; empty until the first valid revision.
    pub lines: std::collections::HashMap<String, Bytes>,
}

impl Snapshot {
    pub fn line_for(&self, service: &str) -> Option<Bytes> {
        self.lines.get(service).cloned()
    }
}

/// Removes the proxy's stream from the fleet when the HTTP response is dropped.
pub struct StreamGuard {
    fleet: Fleet,
    proxy_id: String,
    stream: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.fleet.disconnected(&self.proxy_id, self.stream);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("unknown proxy `{0}`: it must open a config stream first")]
    UnknownProxy(String),
    #[error("ack from `{0}` has an empty or oversized version or reason")]
    InvalidAck(String),
}

impl Fleet {
    pub fn new(
        audit: Audit,
        store: Option<crate::store::Store>,
        debounce: Duration,
        on_change: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let empty = Snapshot { version: String::new(), revision: String::new(), lines: Default::default() };
        let (snapshot, _) = watch::channel(Arc::new(empty));
        let (released, _) = watch::channel(true);
        Fleet(Arc::new(Shared {
            inner: Mutex::new(Inner { boot_ms: crate::now_ms(), ..Inner::default() }),
            snapshot,
            on_change: Box::new(on_change),
            audit,
            store,
            released,
            debounce,
        }))
    }

    /// After a restart: holds every config until the proxies of the previous fleet have all
    /// reconnected, or `max` has passed.
    pub fn hold_until_rejoined(&self, expected: Vec<String>, max: Duration) {
        if expected.is_empty() {
            return;
        }
        tracing::info!(
            proxies = expected.len(),
            ?max,
            "waiting for the previous fleet to reconnect before pushing configs"
        );
        self.lock().awaited = expected.into_iter().collect();
        self.0.released.send_replace(false);
        let fleet = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(max).await;
            let mut inner = fleet.lock();
            let missing = std::mem::take(&mut inner.awaited);
            if !missing.is_empty() {
                tracing::warn!(missing = ?missing, "pushing configs without proxies that did not reconnect");
                fleet.publish(&mut inner);
            }
            drop(inner);
            fleet.0.released.send_replace(true);
        });
    }

    pub fn is_released(&self) -> bool {
        *self.0.released.borrow()
    }

    /// Resolves once configs may be sent.
    pub async fn released(&self) {
        let mut rx = self.0.released.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    fn remember(&self, f: impl FnOnce(crate::store::Store) -> BoxFuture + Send + 'static) {
        if let Some(store) = self.0.store.clone() {
            tokio::spawn(async move {
                if let Err(e) = f(store).await {
                    tracing::warn!(error = %e, "cannot record fleet membership");
                }
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.inner.locked()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.0.snapshot.subscribe()
    }

    pub fn set_mesh(&self, mesh: MeshConfig) {
        let mut inner = self.lock();
        if inner.mesh.as_ref().is_none_or(|m| m.revision != mesh.revision) {
            inner.revision_since = crate::now_ms();
        }
        inner.mesh = Some(Arc::new(mesh));
        self.publish(&mut inner);
    }

    pub fn mesh(&self) -> Option<Arc<MeshConfig>> {
        self.lock().mesh.clone()
    }

    /// A proxy opened its stream. Returns the guard that ends the stream's membership.
    pub fn connected(&self, reg: Registration) -> StreamGuard {
        let now = crate::now_ms();
        let mut inner = self.lock();
        inner.next_stream += 1;
        let stream = inner.next_stream;
        let id = reg.proxy_id.clone();
        let joined = !inner.proxies.contains_key(&id);
        if joined {
            self.0.audit.system(
                "proxy.joined",
                Some(&reg.service),
                format!("proxy {id} ({}/{}) joined at {}", reg.service, reg.version, reg.inbound_addr),
                json!({ "proxy_id": id, "version": reg.version, "address": reg.inbound_addr }),
            );
        }
        let entry = inner.proxies.entry(id.clone()).or_insert_with(|| Entry {
            reg: reg.clone(),
            stream: None,
            disconnected_at: None,
            last_seen: now,
            joined_at: now,
            acked: None,
            nack: None,
        });
        let endpoint_changed = entry.reg.inbound_addr != reg.inbound_addr || entry.disconnected_at.is_some();
        let (member, service) = (id.clone(), reg.service.clone());
        entry.reg = reg;
        entry.stream = Some(stream);
        entry.disconnected_at = None;
        entry.last_seen = now;
        if inner.awaited.remove(&id) && inner.awaited.is_empty() {
            tracing::info!("the previous fleet has reconnected");
            // The snapshot streams send on release must list everyone: publish now, not after
            // the debounce.
            self.publish(&mut inner);
            self.0.released.send_replace(true);
        }
        self.remember(move |store| {
            Box::pin(async move { store.remember_member(&member, &service, crate::now_ms()).await })
        });
        if joined || endpoint_changed {
            self.endpoints_changed(&mut inner);
        } else {
            (self.0.on_change)();
        }
        StreamGuard { fleet: self.clone(), proxy_id: id, stream }
    }

    fn disconnected(&self, proxy_id: &str, stream: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.proxies.get_mut(proxy_id) {
            // A newer stream of the same proxy may already have taken over.
            if e.stream == Some(stream) {
                e.stream = None;
                e.disconnected_at = Some(crate::now_ms());
                tracing::info!(proxy_id, "proxy stream closed");
                (self.0.on_change)();
            }
        }
    }

    /// Forgets proxies disconnected for longer than [`FORGET_AFTER`].
    pub fn sweep(&self) {
        self.sweep_at(crate::now_ms());
    }

    fn sweep_at(&self, now: i64) {
        let cutoff = now - FORGET_AFTER.as_millis() as i64;
        let silent = now - HEARTBEAT_TIMEOUT.as_millis() as i64;
        let mut inner = self.lock();
        let gone: Vec<String> = inner
            .proxies
            .iter()
            .filter(|(_, e)| {
                e.disconnected_at.is_some_and(|t| t < cutoff) || (e.stream.is_some() && e.last_seen < silent)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            let member = id.clone();
            self.remember(move |store| Box::pin(async move { store.forget_member(&member).await }));
            if let Some(e) = inner.proxies.remove(id) {
                self.0.audit.system(
                    "proxy.left",
                    Some(&e.reg.service),
                    format!("proxy {id} ({}/{}) left", e.reg.service, e.reg.version),
                    json!({ "proxy_id": id }),
                );
            }
        }
        // Certificates of proxies that are neither registered nor still valid are forgotten.
        let Inner { certs, proxies, .. } = &mut *inner;
        certs.retain(|id, c| proxies.contains_key(id) || c.not_after > now);
        if !gone.is_empty() {
            self.endpoints_changed(&mut inner);
        }
    }

    /// Endpoint churn is coalesced: a fleet rolling out (or reconnecting after a restart) would
    /// otherwise push one full snapshot per joining proxy to every proxy, O(N²) bytes.
    /// Revisions are never delayed.
    fn endpoints_changed(&self, inner: &mut Inner) {
        if self.0.debounce.is_zero() {
            return self.publish(inner);
        }
        if std::mem::replace(&mut inner.publish_pending, true) {
            return;
        }
        let (fleet, delay) = (self.clone(), self.0.debounce);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut inner = fleet.lock();
            if inner.publish_pending {
                fleet.publish(&mut inner);
            }
        });
    }

    pub fn ack(&self, ack: &Ack) -> Result<(), FleetError> {
        // Versions are ours (`<sha>.<generation>`); anything else is a confused proxy.
        if ack.version.is_empty() || ack.version.len() > 128 || ack.error.as_ref().is_some_and(|e| e.len() > 4096) {
            return Err(FleetError::InvalidAck(ack.proxy_id.clone()));
        }
        let mut inner = self.lock();
        let e = inner.proxies.get_mut(&ack.proxy_id).ok_or_else(|| FleetError::UnknownProxy(ack.proxy_id.clone()))?;
        e.last_seen = crate::now_ms();
        match &ack.error {
            None => {
                e.acked = Some(ack.version.clone());
                e.nack = None;
            }
            Some(reason) => {
                tracing::warn!(proxy_id = %ack.proxy_id, version = %ack.version, %reason, "proxy refused config");
                if e.nack.as_ref() != Some(reason) {
                    self.0.audit.system(
                        "proxy.nacked",
                        Some(&e.reg.service),
                        format!("proxy {} refused config {}: {reason}", ack.proxy_id, ack.version),
                        json!({ "proxy_id": ack.proxy_id, "version": ack.version, "reason": reason }),
                    );
                }
                e.nack = Some(reason.clone());
            }
        }
        self.audit_if_synced(&mut inner);
        drop(inner);
        (self.0.on_change)();
        Ok(())
    }

    /// The sync outcome of a revision, once: every live proxy runs it, and how long that took.
    fn audit_if_synced(&self, inner: &mut Inner) {
        let Some(revision) = inner.mesh.as_ref().map(|m| m.revision.clone()) else { return };
        let all = !inner.proxies.is_empty()
            && inner.proxies.values().all(|e| e.acked.as_deref().map(revision_of) == Some(revision.as_str()));
        if !all || inner.synced_audited.as_ref() == Some(&revision) {
            return;
        }
        let took = crate::now_ms() - inner.revision_since;
        let n = inner.proxies.len();
        self.0.audit.record(crate::store::NewEvent {
            at: crate::now_ms(),
            kind: "revision.synced".into(),
            actor: crate::audit::SYSTEM.into(),
            revision: Some(revision.clone()),
            service: None,
            summary: format!(
                "revision {} synced: {n} of {n} proxies run it, {took} ms after it was applied",
                crate::audit::short(&revision)
            ),
            detail: json!({ "proxies": n, "took_ms": took }),
        });
        inner.synced_audited = Some(revision);
    }

    /// A proxy received a certificate naming `identity`, expiring at `not_after_ms`. Its
    /// callers learn the identity (and so to speak mTLS to it) with the next endpoints.
    pub fn certified(&self, proxy_id: &str, identity: &str, not_after_ms: i64) {
        let mut inner = self.lock();
        let cert = Cert { identity: identity.to_string(), not_after: not_after_ms };
        let before = inner.certs.insert(proxy_id.to_string(), cert).map(|c| c.identity);
        if inner.proxies.contains_key(proxy_id) && before.as_deref() != Some(identity) {
            self.endpoints_changed(&mut inner);
        }
        drop(inner);
        (self.0.on_change)();
    }

    /// The service a registered proxy serves.
    pub fn service_of(&self, proxy_id: &str) -> Option<String> {
        self.lock().proxies.get(proxy_id).map(|e| e.reg.service.clone())
    }

    /// The service a registered proxy serves, recording that it was heard from.
    pub fn heartbeat(&self, proxy_id: &str) -> Option<String> {
        self.heartbeat_at(proxy_id, crate::now_ms())
    }

    fn heartbeat_at(&self, proxy_id: &str, now: i64) -> Option<String> {
        let mut inner = self.lock();
        let e = inner.proxies.get_mut(proxy_id)?;
        e.last_seen = now;
        Some(e.reg.service.clone())
    }

    pub fn proxies(&self) -> Vec<ProxyView> {
        let inner = self.lock();
        let current = inner.mesh.as_ref().map(|m| m.revision.clone());
        inner
            .proxies
            .iter()
            .filter(|(_, e)| e.stream.is_some())
            .map(|(id, e)| {
                let applied_revision = e.acked.as_deref().map(revision_of).map(str::to_string);
                let synced = current.is_some() && applied_revision == current;
                ProxyView {
                    id: id.clone(),
                    service: e.reg.service.clone(),
                    version: e.reg.version.clone(),
                    address: e.reg.inbound_addr.clone(),
                    admin: e.reg.admin_addr.clone(),
                    cert_expires: inner.certs.get(id).map(|c| c.not_after),
                    synced,
                    applied_version: e.acked.clone(),
                    applied_revision,
                    nack: e.nack.clone(),
                    last_seen: e.last_seen,
                    lagging_since: (!synced).then(|| inner.revision_since.max(e.joined_at)),
                }
            })
            .collect()
    }

    /// Rebuilds the snapshot after a change of mesh or endpoints and wakes every stream.
    fn publish(&self, inner: &mut Inner) {
        inner.publish_pending = false;
        inner.generation += 1;
        let Some(mesh) = inner.mesh.clone() else {
            (self.0.on_change)();
            return;
        };
        let mut endpoints: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for (id, e) in &inner.proxies {
            endpoints.entry(e.reg.service.clone()).or_default().push(Endpoint {
                version: e.reg.version.clone(),
                addr: e.reg.inbound_addr.clone(),
                proxy_id: id.clone(),
                identity: inner.certs.get(id).map(|c| c.identity.clone()),
            });
        }
        // The boot time keeps versions unique across control-plane restarts.
        let version = format!("{}.{:x}-{}", mesh.revision, inner.boot_ms, inner.generation);
        let served: std::collections::BTreeSet<&String> = inner.proxies.values().map(|e| &e.reg.service).collect();
        let lines = served
            .into_iter()
            .map(|service| {
                let config = slice::slice(&mesh, &endpoints, service, &version);
                let mut line = serde_json::to_vec(&StreamMessage::Config(config)).unwrap_or_default();
                line.push(b'\n');
                (service.clone(), Bytes::from(line))
            })
            .collect();
        self.0.snapshot.send_replace(Arc::new(Snapshot { version, revision: mesh.revision.clone(), lines }));
        (self.0.on_change)();
    }
}

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), crate::store::StoreError>> + Send>>;

/// Config versions are `<revision>.<boot>-<generation>`.
pub fn revision_of(version: &str) -> &str {
    version.rsplit_once('.').map_or(version, |(r, _)| r)
}

/// The ping line every stream sends when idle.
pub fn ping_line() -> Bytes {
    let mut line = serde_json::to_vec(&StreamMessage::Ping).unwrap_or_default();
    line.push(b'\n');
    line.into()
}

#[cfg(test)]
mod tests;
