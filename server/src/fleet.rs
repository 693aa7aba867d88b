//! The fleet: which proxies exist, what each runs, and the config each should run.
//!
//! Every proxy holds one stream (`POST /fleet/v1/stream`); the fleet publishes a snapshot
//! (mesh config + endpoints) through a `watch` channel and each stream sends it on change, so
//! a new revision reaches every proxy at once. Proxies ACK or NACK each version.

mod registry;
pub mod slice;
pub mod tls;

use registry::{Effect, Registry};

use crate::audit::Audit;
use crate::sync::Locked;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use trellis_api::ProxyView;
use trellis_model::MeshConfig;
use trellis_model::fleet::{Ack, Registration, StreamMessage};

/// A proxy whose stream dropped stays an endpoint this long: a control-plane hiccup must not
/// take healthy endpoints out of rotation. After it, the proxy is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);
/// Endpoint changes within this window go out as one snapshot (Istio debounces pushes alike).
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// A proxy whose stream is open but which has not reported for this long is hung: it is
/// dropped from endpoints at once (proxies report every two seconds).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a proxy with an open stream may be silent before it counts as hung: the
/// [`HEARTBEAT_TIMEOUT`] up to 5,000 proxies, then 5 s more for every [`HUNG_STEP`] more, up
/// to 30 s. A large fleet's reports wait longest while the control plane is busiest (10,000
/// proxies joining at once left some unheard for 12-15 s): they are not dropped for it.
pub fn hung_after(proxies: usize) -> Duration {
    HEARTBEAT_TIMEOUT.max(Duration::from_secs(5 * crate::telemetry::paced_s(proxies, HUNG_STEP, 6)))
}

/// The proxies that add 5 s to [`hung_after`]: the scale reports were paced at before the
/// duplex stream, kept since joins still delay reports as much.
const HUNG_STEP: usize = 2_500;

#[derive(Clone)]
pub struct Fleet(Arc<Shared>);

struct Shared {
    /// This replica's id: the fleet's rows it writes carry it.
    replica: String,
    registry: Mutex<Registry>,
    /// Rows for the other replicas, gathered for one write.
    outbox: Mutex<std::collections::BTreeMap<String, Share>>,
    /// Service → the slice its streams send, so that a publish wakes only the streams whose
    /// slice changed: a proxy joining costs the others nothing, not a wake-up each. Taken
    /// after the registry's lock, as a publish holds it.
    slices: Mutex<HashMap<String, watch::Sender<Option<Arc<SliceLines>>>>>,
    on_change: Box<dyn Fn() + Send + Sync>,
    audit: Audit,
    /// Where fleet membership is shared with the other replicas and remembered across
    /// restarts; `None` in unit tests.
    store: Option<crate::store::Store>,
    /// False while waiting for the previous fleet to reconnect after a restart: streams send
    /// nothing, so proxies keep their last config instead of a half-empty one.
    released: watch::Sender<bool>,
    /// How long endpoint changes are gathered before one publish (zero: at once).
    debounce: Duration,
}

/// What the streams send: each served service's slice, shared by all of its proxies.
pub struct Snapshot {
    pub revision: String,
    /// Service → its slice; empty until the first valid revision.
    pub slices: HashMap<String, Arc<SliceLines>>,
}

/// Deltas kept per slice, and their bytes at most: a proxy further behind (its stream was slow
/// to send) gets a full config instead. A slow stream under a fleet's churn falls behind by a
/// publish every debounce; a megabyte of deltas is as much as a large full config.
const DELTAS_KEPT: usize = 64;
const DELTA_BYTES_KEPT: usize = 1 << 20;

/// One service's slice, its full config line (made once, when a proxy first needs it) and the
/// deltas that led to it.
pub struct SliceLines {
    pub slice: slice::Slice,
    full: std::sync::OnceLock<Bytes>,
    /// Oldest first: the version each applies to, and its line. The last one makes `slice`.
    deltas: std::collections::VecDeque<(String, Bytes)>,
}

impl SliceLines {
    fn new(slice: slice::Slice) -> Self {
        SliceLines { slice, full: Default::default(), deltas: Default::default() }
    }

    /// The slice after this one, with the delta between them.
    fn followed_by(
        &self,
        next: slice::Slice,
        changes: &mut impl FnMut(&str, &slice::EndpointList, &slice::EndpointList) -> trellis_model::fleet::EndpointChanges,
    ) -> Self {
        let delta = next.delta_from(&self.slice, changes);
        let mut deltas = self.deltas.clone();
        deltas.push_back((self.slice.version.clone(), slice::delta_line(delta)));
        let mut bytes: usize = deltas.iter().map(|(_, line)| line.len()).sum();
        while deltas.len() > DELTAS_KEPT || bytes > DELTA_BYTES_KEPT {
            bytes -= deltas.pop_front().map_or(0, |(_, line)| line.len());
        }
        SliceLines { slice: next, full: Default::default(), deltas }
    }

    fn full(&self) -> Bytes {
        self.full.get_or_init(|| self.slice.config_line()).clone()
    }

    /// What a stream that last sent version `sent` sends now, if anything: the deltas since,
    /// to a proxy that takes them and when they are all kept, else the full config. `sent`
    /// becomes the version sent.
    pub fn next(&self, sent: &mut Option<String>, incremental: bool) -> Option<Bytes> {
        let current = &self.slice.version;
        if sent.as_ref() == Some(current) {
            return None;
        }
        let since =
            sent.as_ref().filter(|_| incremental).and_then(|v| self.deltas.iter().position(|(base, _)| base == v));
        let out = match since {
            Some(i) if i + 1 == self.deltas.len() => self.deltas[i].1.clone(),
            Some(i) => Bytes::from(self.deltas.range(i..).flat_map(|(_, l)| l.iter().copied()).collect::<Vec<u8>>()),
            None => self.full(),
        };
        *sent = Some(current.clone());
        Some(out)
    }
}

impl Snapshot {
    /// The full config line of `service`'s proxies.
    pub fn line_for(&self, service: &str) -> Option<Bytes> {
        self.slices.get(service).map(|s| s.full())
    }

    pub fn version_for(&self, service: &str) -> Option<&str> {
        self.slices.get(service).map(|s| s.slice.version.as_str())
    }
}

/// Removes the proxy's stream from the fleet when the HTTP response is dropped.
pub struct StreamGuard {
    fleet: Fleet,
    proxy_id: String,
    stream: u64,
}

impl StreamGuard {
    /// Whether this stream still serves its proxy: a newer stream of the same proxy replaced
    /// it, or the proxy was dropped as hung (silent past the heartbeat timeout), and then it
    /// should end, so that a proxy still alive registers again rather than stay unknown.
    pub fn serves(&self) -> bool {
        self.fleet.lock().serves(&self.proxy_id, self.stream)
    }
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

/// A change of a proxy's row, waiting in the outbox; the newest one of a proxy wins.
enum Share {
    Row(Box<(Registration, crate::store::MemberStatus)>),
    Disconnected,
    Forget,
}

/// How long the outbox gathers rows before one write.
const SHARE_EVERY: Duration = Duration::from_millis(100);
/// A proxy connected elsewhere whose row is older than this is not counted (its replica
/// refreshes its rows every few seconds while it runs).
pub const REMOTE_FRESH: Duration = Duration::from_secs(15);

impl Fleet {
    pub fn new(
        replica: String,
        audit: Audit,
        store: Option<crate::store::Store>,
        debounce: Duration,
        on_change: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let (released, _) = watch::channel(true);
        Fleet(Arc::new(Shared {
            replica,
            outbox: Mutex::new(Default::default()),
            registry: Mutex::new(Registry::new(store.as_ref().is_some_and(|s| !s.is_shared()))),
            slices: Mutex::new(HashMap::new()),
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
        self.lock().await_fleet(expected);
        self.0.released.send_replace(false);
        let fleet = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(max).await;
            let mut registry = fleet.lock();
            let (missing, effects) = registry.stop_waiting();
            if !missing.is_empty() {
                tracing::warn!(missing = ?missing, "pushing configs without proxies that did not reconnect");
            }
            fleet.carry_out(&mut registry, effects);
            drop(registry);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.registry.locked()
    }

    /// Does what a change of the registry asks, under the same lock, so that snapshots go
    /// out in the order their changes were made.
    fn carry_out(&self, registry: &mut Registry, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Audit(event) => self.0.audit.record(event),
                Effect::Share(reg, status) => self.share(reg.proxy_id.clone(), Share::Row(Box::new((reg, status)))),
                Effect::Disconnected(proxy_id) => self.share(proxy_id, Share::Disconnected),
                Effect::Forget(proxy_id) => self.share(proxy_id, Share::Forget),
                Effect::Publish => self.publish(registry),
                Effect::PublishSoon => self.publish_soon(registry),
                Effect::Release => {
                    tracing::info!("the previous fleet has reconnected");
                    self.0.released.send_replace(true);
                }
                Effect::Changed => (self.0.on_change)(),
                Effect::Hung(proxy_id, silent_ms) => tracing::warn!(
                    %proxy_id,
                    silent_s = silent_ms / 1000,
                    "proxy silent with its stream open: dropped as hung (it registers again when it can)"
                ),
            }
        }
    }

    /// Puts a proxy's row in the outbox; the first one in sends the outbox shortly after.
    /// Every replica writes rows in proxy order, so two never deadlock on them; a write the
    /// database refuses is dropped (written late, a row would take back a proxy that has since
    /// moved to another replica): the rows of the proxies still here are written again on
    /// their next change, and kept fresh meanwhile.
    fn share(&self, proxy_id: String, change: Share) {
        let Some(store) = self.0.store.clone() else { return };
        let first = {
            let mut outbox = self.0.outbox.locked();
            outbox.insert(proxy_id, change);
            outbox.len() == 1
        };
        if !first {
            return;
        }
        let fleet = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHARE_EVERY).await;
            let changes = std::mem::take(&mut *fleet.0.outbox.locked());
            let me = &fleet.0.replica;
            let mut rows = Vec::new();
            let mut done: Result<(), crate::store::StoreError> = Ok(());
            for (proxy_id, change) in changes {
                let result = match change {
                    Share::Row(row) => {
                        rows.push(*row);
                        Ok(())
                    }
                    Share::Disconnected => store.member_disconnected(me, &proxy_id).await,
                    Share::Forget => store.forget_member(me, &proxy_id).await,
                };
                done = done.and(result);
            }
            // Stopping closes the database: the rows go stale and the others count these
            // proxies gone, as they are.
            if let Err(e) = done.and(store.share_members(me, &rows).await)
                && !store.is_closed()
            {
                tracing::warn!(error = %e, "cannot share fleet membership; the other replicas catch up on the next change");
            }
        });
    }

    /// This replica leads (it records who joins and leaves the fleet), or no longer does.
    pub fn set_leads(&self, leads: bool) {
        self.lock().set_leads(leads);
    }

    /// Takes what the database says of the other replicas' proxies, and keeps this replica's
    /// own rows fresh. Run every second or so.
    pub async fn exchange(&self, leads: bool, touch: bool) -> Result<(), crate::store::StoreError> {
        let Some(store) = self.0.store.clone() else { return Ok(()) };
        if touch {
            store.touch_members(&self.0.replica).await?;
        }
        let fresh = REMOTE_FRESH.as_millis() as i64;
        let members = store.members_elsewhere(&self.0.replica, fresh, FORGET_AFTER.as_millis() as i64).await?;
        let mut registry = self.lock();
        registry.set_leads(leads);
        let effects = registry.set_remote(members, crate::now_ms());
        self.carry_out(&mut registry, effects);
        Ok(())
    }

    /// Endpoint churn is coalesced: a fleet rolling out (or reconnecting after a restart) would
    /// otherwise push one full snapshot per joining proxy to every proxy, O(N²) bytes.
    /// Revisions are never delayed.
    fn publish_soon(&self, registry: &mut Registry) {
        if self.0.debounce.is_zero() {
            return self.publish(registry);
        }
        if !registry.publish_soon() {
            return;
        }
        let (fleet, delay) = (self.clone(), self.0.debounce);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut registry = fleet.lock();
            if registry.publish_pending() {
                fleet.publish(&mut registry);
            }
        });
    }

    /// Rebuilds the snapshot after a change of mesh or endpoints and wakes the streams whose
    /// slice changed.
    fn publish(&self, registry: &mut Registry) {
        if let Some(snapshot) = registry.snapshot() {
            let mut slices = self.0.slices.locked();
            // Services whose every stream ended (or never served) are let go.
            slices.retain(|_, tx| tx.receiver_count() > 0);
            for (service, tx) in slices.iter() {
                let Some(lines) = snapshot.slices.get(service) else { continue };
                tx.send_if_modified(|current| {
                    let changed = !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, lines));
                    if changed {
                        *current = Some(lines.clone());
                    }
                    changed
                });
            }
        }
        (self.0.on_change)();
    }

    /// What the streams send now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().published()
    }

    /// The slice `service`'s streams send, as it changes; `None` until it is first published.
    /// Under the registry's lock, so no publish comes between the first value and the sender.
    pub fn subscribe_slice(&self, service: &str) -> watch::Receiver<Option<Arc<SliceLines>>> {
        let registry = self.lock();
        let mut slices = self.0.slices.locked();
        let tx = slices.entry(service.to_string()).or_insert_with(|| watch::Sender::new(registry.slice(service)));
        tx.subscribe()
    }

    pub fn set_mesh(&self, mesh: MeshConfig) {
        let mut registry = self.lock();
        let effects = registry.set_mesh(mesh, crate::now_ms());
        self.carry_out(&mut registry, effects);
    }

    pub fn mesh(&self) -> Option<Arc<MeshConfig>> {
        self.lock().mesh()
    }

    /// A proxy opened its stream. Returns the guard that ends the stream's membership.
    pub fn connected(&self, reg: Registration) -> StreamGuard {
        let proxy_id = reg.proxy_id.clone();
        let mut registry = self.lock();
        let (stream, effects) = registry.connect(reg, crate::now_ms());
        self.carry_out(&mut registry, effects);
        StreamGuard { fleet: self.clone(), proxy_id, stream }
    }

    fn disconnected(&self, proxy_id: &str, stream: u64) {
        let mut registry = self.lock();
        let effects = registry.disconnect(proxy_id, stream, crate::now_ms());
        if !effects.is_empty() {
            tracing::info!(proxy_id, "proxy stream closed");
        }
        self.carry_out(&mut registry, effects);
    }

    /// Forgets proxies disconnected for longer than [`FORGET_AFTER`].
    pub fn sweep(&self) {
        self.sweep_at(crate::now_ms());
    }

    fn sweep_at(&self, now: i64) {
        let mut registry = self.lock();
        let effects = registry.sweep(now);
        self.carry_out(&mut registry, effects);
    }

    pub fn ack(&self, ack: &Ack) -> Result<(), FleetError> {
        let mut registry = self.lock();
        let effects = registry.ack(ack, crate::now_ms())?;
        if let Some(reason) = &ack.error {
            tracing::warn!(proxy_id = %ack.proxy_id, version = %ack.version, %reason, "proxy refused config");
        }
        self.carry_out(&mut registry, effects);
        Ok(())
    }

    /// A proxy received a certificate naming `identity`, expiring at `not_after_ms`.
    pub fn certified(&self, proxy_id: &str, identity: &str, not_after_ms: i64) {
        let mut registry = self.lock();
        let effects = registry.certified(proxy_id, identity, not_after_ms);
        self.carry_out(&mut registry, effects);
    }

    /// The service a registered proxy serves.
    pub fn service_of(&self, proxy_id: &str) -> Option<String> {
        self.lock().service_of(proxy_id)
    }

    /// The service a registered proxy serves, recording that it was heard from.
    pub fn heartbeat(&self, proxy_id: &str) -> Option<String> {
        self.heartbeat_at(proxy_id, crate::now_ms())
    }

    fn heartbeat_at(&self, proxy_id: &str, now: i64) -> Option<String> {
        self.lock().heartbeat(proxy_id, now)
    }

    pub fn proxies(&self) -> Vec<ProxyView> {
        self.lock().proxies()
    }

    /// The proxies this replica knows of itself, connected or in their grace period.
    pub fn local_count(&self) -> usize {
        self.lock().local_count()
    }
}

/// Idle streams are pinged at most this often a second in all: a proxy of a large fleet is
/// pinged less often (every eight seconds at 10,000) if it accepts it, rather than the
/// control plane spending a core's fifth on pings.
pub const PINGS_PER_S: usize = 1_250;

/// The seconds between pings on each of `proxies` streams: at [`PINGS_PER_S`] at most, up
/// to ten.
pub fn ping_every_s(proxies: usize) -> u64 {
    crate::telemetry::paced_s(proxies, PINGS_PER_S, 10)
}

/// Config versions are `<revision>.<boot>-<generation>`.
pub fn revision_of(version: &str) -> &str {
    version.rsplit_once('.').map_or(version, |(r, _)| r)
}

/// The ping line every stream sends when idle.
pub fn ping_line() -> Bytes {
    slice::line(&StreamMessage::Ping)
}

#[cfg(test)]
mod tests;
