//! The fleet's registry, as plain data: which proxies exist, what each runs, which revision is
//! in force, and the configs each service's proxies are sent. Every change is a method that
//! takes the time and returns the [`Effect`]s to carry out (audit events, membership to
//! remember, snapshots to publish); `Fleet` carries them out. Tested without a runtime, a
//! store or a clock, as linkerd2's policy-controller tests its index.

use super::slice::{self, EndpointList, Part};
use super::{FORGET_AFTER, FleetError, SliceLines, Snapshot, hung_after, revision_of};
use crate::store::{Member, MemberStatus, NewEvent};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use trellis_api::ProxyView;
use trellis_model::fleet::{Ack, EndpointChanges, Registration};
use trellis_model::{MeshConfig, ServiceConfig};

/// What a change asks of the world around the registry.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// An event for the audit log.
    Audit(NewEvent),
    /// A proxy connected here, or what it runs changed: the other replicas are told.
    Share(Registration, MemberStatus),
    /// A proxy's stream here closed.
    Disconnected(String),
    /// A proxy is forgotten here.
    Forget(String),
    /// A new snapshot for every stream, now.
    Publish,
    /// Endpoints changed: a new snapshot once the debounce has gathered what else changes.
    PublishSoon,
    /// The fleet known before a restart is back: configs may be sent.
    Release,
    /// Something the dashboard shows changed.
    Changed,
    /// A proxy was dropped as hung after this many ms of silence.
    Hung(String, i64),
}

#[derive(Default)]
pub struct Registry {
    mesh: Option<Arc<MeshConfig>>,
    proxies: BTreeMap<String, Entry>,
    next_stream: u64,
    /// Proxies known before a restart that have not reconnected yet.
    awaited: HashSet<String>,
    /// An endpoint change is waiting for the debounced publish.
    publish_pending: bool,
    /// When the current revision was applied: a proxy not running it lags since then (or
    /// since it joined, if later).
    revision_since: i64,
    /// The last revision audited as synced on every proxy.
    synced_audited: Option<String>,
    /// The proxy the last look found not running the revision: the next look starts there.
    sync_blocker: Option<String>,
    /// Each proxy's certificate, by proxy id. Proxies certify before they register, so this
    /// outlives and precedes registry entries (bounded by `sweep`).
    certs: BTreeMap<String, Cert>,
    /// Proxies connected to the other replicas, as the database last said.
    remote: BTreeMap<String, Member>,
    /// Only the leader records who joined and left the fleet; the others keep count quietly,
    /// so that a new leader does not see the whole fleet join.
    leads: bool,
    /// The whole fleet (here and elsewhere) as last judged: id → service and version.
    members: BTreeMap<String, (String, String)>,
    /// The mesh's services, each a part shared by the slices that hold it.
    service_parts: BTreeMap<String, Arc<Part<ServiceConfig>>>,
    /// Every service's endpoints as last published.
    endpoint_parts: BTreeMap<String, EndpointList>,
    /// Each served service's slice as last published, with the deltas that led to it.
    slices: HashMap<String, Arc<SliceLines>>,
    /// No other replica reads this one's rows (SQLite): they need to say who is connected, for
    /// the wait after a restart, but not what each proxy ACKed (at 10,000 proxies a commit's
    /// ACKs were a tenth of its CPU, and held the one database connection from the lease).
    alone: bool,
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

fn system(at: i64, kind: &str, service: Option<&str>, summary: String, detail: serde_json::Value) -> Effect {
    Effect::Audit(NewEvent {
        at,
        kind: kind.into(),
        actor: crate::audit::SYSTEM.into(),
        revision: None,
        service: service.map(str::to_string),
        summary,
        detail,
    })
}

impl Registry {
    /// A registry whose rows no other replica reads when `alone`.
    pub fn new(alone: bool) -> Self {
        Registry { alone, ..Default::default() }
    }

    /// After a restart: the proxies to wait for before configs go out.
    pub fn await_fleet(&mut self, expected: impl IntoIterator<Item = String>) {
        self.awaited = expected.into_iter().collect();
    }

    /// The wait for the previous fleet is over: whoever is missing, configs go out now.
    pub fn stop_waiting(&mut self) -> (Vec<String>, Vec<Effect>) {
        let missing: Vec<String> = std::mem::take(&mut self.awaited).into_iter().collect();
        let effects = if missing.is_empty() { vec![] } else { vec![Effect::Publish] };
        (missing, effects)
    }

    pub fn mesh(&self) -> Option<Arc<MeshConfig>> {
        self.mesh.clone()
    }

    pub fn set_mesh(&mut self, mesh: MeshConfig, now: i64) -> Vec<Effect> {
        if self.mesh.as_ref().is_none_or(|m| m.revision != mesh.revision) {
            self.revision_since = now;
        }
        // A service that did not change keeps its part: its digest is not worked out again.
        self.service_parts = mesh
            .services
            .iter()
            .map(|(name, svc)| match self.service_parts.get(name) {
                Some(part) if part.value == *svc => (name.clone(), part.clone()),
                _ => (name.clone(), Part::new(svc.clone())),
            })
            .collect();
        self.mesh = Some(Arc::new(mesh));
        vec![Effect::Publish]
    }

    /// A proxy opened its stream; returns the stream's number, which its end must name.
    pub fn connect(&mut self, reg: Registration, now: i64) -> (u64, Vec<Effect>) {
        let mut effects = Vec::new();
        self.next_stream += 1;
        let stream = self.next_stream;
        let id = reg.proxy_id.clone();
        // New here (its service may not have a config line yet), or moved from another
        // replica: either way the snapshot is rebuilt for it.
        let joined = !self.proxies.contains_key(&id);
        let entry = self.proxies.entry(id.clone()).or_insert_with(|| Entry {
            reg: reg.clone(),
            stream: None,
            disconnected_at: None,
            last_seen: now,
            joined_at: now,
            acked: None,
            nack: None,
        });
        let endpoint_changed = entry.reg.inbound_addr != reg.inbound_addr || entry.disconnected_at.is_some();
        // A proxy back with a version runs it: it is not sent again, so it acknowledges nothing.
        if entry.acked.is_none() {
            entry.acked.clone_from(&reg.resume);
        }
        entry.reg = reg;
        entry.stream = Some(stream);
        entry.disconnected_at = None;
        entry.last_seen = now;
        effects.extend(self.share(&id));
        effects.extend(self.judge_one(&id, now));
        if self.awaited.remove(&id) && self.awaited.is_empty() {
            // The snapshot streams send on release must list everyone: publish now, not after
            // the debounce.
            effects.extend([Effect::Publish, Effect::Release]);
        }
        effects.push(if joined || endpoint_changed { Effect::PublishSoon } else { Effect::Changed });
        (stream, effects)
    }

    /// Whether `stream` is the one serving proxy `proxy_id`.
    pub fn serves(&self, proxy_id: &str, stream: u64) -> bool {
        self.proxies.get(proxy_id).is_some_and(|e| e.stream == Some(stream))
    }

    /// A proxy's stream `stream` ended (a newer one of the same proxy may have taken over).
    pub fn disconnect(&mut self, proxy_id: &str, stream: u64, now: i64) -> Vec<Effect> {
        match self.proxies.get_mut(proxy_id) {
            Some(e) if e.stream == Some(stream) => {
                e.stream = None;
                e.disconnected_at = Some(now);
                vec![Effect::Disconnected(proxy_id.to_string()), Effect::Changed]
            }
            _ => vec![],
        }
    }

    /// Forgets proxies disconnected for longer than [`FORGET_AFTER`] and those whose stream
    /// is open but silent for [`hung_after`] (hung).
    pub fn sweep(&mut self, now: i64) -> Vec<Effect> {
        let cutoff = now - FORGET_AFTER.as_millis() as i64;
        let silent = now - hung_after(self.local_count()).as_millis() as i64;
        let gone: Vec<(String, bool)> = self
            .proxies
            .iter()
            .filter_map(|(id, e)| {
                let hung = e.stream.is_some() && e.last_seen < silent;
                (hung || e.disconnected_at.is_some_and(|t| t < cutoff)).then(|| (id.clone(), hung))
            })
            .collect();
        let mut effects = Vec::new();
        for (id, hung) in &gone {
            if let Some(e) = self.proxies.remove(id)
                && *hung
            {
                effects.push(Effect::Hung(id.clone(), now - e.last_seen));
            }
            effects.push(Effect::Forget(id.clone()));
        }
        effects.extend(self.judge(now));
        // Certificates of proxies that are neither registered nor still valid are forgotten.
        let Registry { certs, proxies, .. } = self;
        certs.retain(|id, c| proxies.contains_key(id) || c.not_after > now);
        if !gone.is_empty() {
            effects.push(Effect::PublishSoon);
        }
        effects
    }

    pub fn ack(&mut self, ack: &Ack, now: i64) -> Result<Vec<Effect>, FleetError> {
        // Versions are ours (`<sha>.<content>`); anything else is a confused proxy.
        if ack.version.is_empty() || ack.version.len() > 128 || ack.error.as_ref().is_some_and(|e| e.len() > 4096) {
            return Err(FleetError::InvalidAck(ack.proxy_id.clone()));
        }
        let e = self.proxies.get_mut(&ack.proxy_id).ok_or_else(|| FleetError::UnknownProxy(ack.proxy_id.clone()))?;
        e.last_seen = now;
        let before = (e.acked.clone(), e.nack.clone());
        let mut effects = Vec::new();
        match &ack.error {
            None => {
                e.acked = Some(ack.version.clone());
                e.nack = None;
            }
            Some(reason) => {
                if e.nack.as_ref() != Some(reason) {
                    let summary = format!("proxy {} refused config {}: {reason}", ack.proxy_id, ack.version);
                    let detail = json!({ "proxy_id": ack.proxy_id, "version": ack.version, "reason": reason });
                    effects.push(system(now, "proxy.nacked", Some(&e.reg.service), summary, detail));
                }
                e.nack = Some(reason.clone());
            }
        }
        if before != (e.acked.clone(), e.nack.clone()) && !self.alone {
            effects.extend(self.share(&ack.proxy_id));
        }
        effects.extend(self.synced(now));
        effects.push(Effect::Changed);
        Ok(effects)
    }

    /// The sync outcome of a revision, once: every live proxy runs it, and how long that took.
    /// This runs on every ACK, so a look starts at the proxy the last one found lagging and
    /// stops at the first that still lags (going round once at most): a commit's ACKs cost
    /// about the fleet's size in all, not the fleet's size each (it was 60 % of the control
    /// plane's CPU as 10,000 proxies joined).
    fn synced(&mut self, now: i64) -> Option<Effect> {
        let revision = self.mesh.as_ref()?.revision.clone();
        if self.synced_audited.as_ref() == Some(&revision) {
            return None;
        }
        let runs = |acked: Option<&str>| acked.map(revision_of) == Some(revision.as_str());
        // Every connected proxy, here or elsewhere, once.
        let lags_here =
            |(id, e): (&String, &Entry)| (e.stream.is_some() && !runs(e.acked.as_deref())).then(|| id.clone());
        let elsewhere =
            |(id, m): &(&String, &Member)| m.connected && self.proxies.get(*id).is_none_or(|e| e.stream.is_none());
        let from = self.sync_blocker.take().unwrap_or_default();
        let lagging = (self.proxies.range(from.clone()..).chain(self.proxies.range(..from)).find_map(lags_here))
            .or_else(|| {
                let mut remote = self.remote.iter().filter(elsewhere);
                remote.find(|(_, m)| !runs(m.status.acked.as_deref())).map(|(id, _)| id.clone())
            });
        if lagging.is_some() {
            self.sync_blocker = lagging;
            return None;
        }
        let n =
            self.proxies.values().filter(|e| e.stream.is_some()).count() + self.remote.iter().filter(elsewhere).count();
        if n == 0 {
            return None;
        }
        self.synced_audited = Some(revision.clone());
        if !self.leads {
            return None;
        }
        let took = now - self.revision_since;
        Some(Effect::Audit(NewEvent {
            at: now,
            kind: "revision.synced".into(),
            actor: crate::audit::SYSTEM.into(),
            revision: Some(revision.clone()),
            service: None,
            summary: format!(
                "revision {} synced: {n} of {n} proxies run it, {took} ms after it was applied",
                crate::audit::short(&revision)
            ),
            detail: json!({ "proxies": n, "took_ms": took }),
        }))
    }

    /// The row the other replicas read for proxy `id`, while it is connected here.
    fn share(&self, id: &str) -> Option<Effect> {
        let e = self.proxies.get(id).filter(|e| e.stream.is_some())?;
        let cert = self.certs.get(id);
        let status = MemberStatus {
            acked: e.acked.clone(),
            nack: e.nack.clone(),
            identity: cert.map(|c| c.identity.clone()),
            cert_expires: cert.map(|c| c.not_after),
            joined_at: e.joined_at,
            last_seen: e.last_seen,
        };
        Some(Effect::Share(e.reg.clone(), status))
    }

    /// A proxy received a certificate naming `identity`, expiring at `not_after_ms`. Its
    /// callers learn the identity (and so to speak mTLS to it) with the next endpoints.
    pub fn certified(&mut self, proxy_id: &str, identity: &str, not_after_ms: i64) -> Vec<Effect> {
        let cert = Cert { identity: identity.to_string(), not_after: not_after_ms };
        let before = self.certs.insert(proxy_id.to_string(), cert).map(|c| c.identity);
        let mut effects = Vec::new();
        if self.proxies.contains_key(proxy_id) && before.as_deref() != Some(identity) {
            effects.push(Effect::PublishSoon);
        }
        effects.extend(self.share(proxy_id));
        effects.push(Effect::Changed);
        effects
    }

    /// The proxies registered here, connected or in their grace period.
    pub fn local_count(&self) -> usize {
        self.proxies.len()
    }

    /// The service a registered proxy serves.
    pub fn service_of(&self, proxy_id: &str) -> Option<String> {
        self.proxies.get(proxy_id).map(|e| e.reg.service.clone())
    }

    /// The service a registered proxy serves, recording that it was heard from.
    pub fn heartbeat(&mut self, proxy_id: &str, now: i64) -> Option<String> {
        let e = self.proxies.get_mut(proxy_id)?;
        e.last_seen = now;
        Some(e.reg.service.clone())
    }

    /// Marks a debounced publish as due; false when one already is.
    pub fn publish_soon(&mut self) -> bool {
        !std::mem::replace(&mut self.publish_pending, true)
    }

    pub fn publish_pending(&self) -> bool {
        self.publish_pending
    }

    /// The next snapshot: each served service's slice, and for one that changed, the delta
    /// from the last. `None` before the first valid revision.
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        self.publish_pending = false;
        let mesh = self.mesh.clone()?;
        // Each service's endpoints as one shared part; an unchanged list keeps its part, so
        // the slices holding it see at once that it did not change.
        let endpoints: BTreeMap<String, EndpointList> = self
            .endpoints()
            .into_iter()
            .map(|(name, list)| match self.endpoint_parts.get(&name) {
                Some(part) if part.value == list => (name, part.clone()),
                _ => (name, Part::new(list)),
            })
            .collect();
        self.endpoint_parts = endpoints;
        // How a list changed is worked out once, whichever slices hold it.
        let mut known: HashMap<(usize, usize), EndpointChanges> = HashMap::new();
        let mut changes = |_: &str, before: &EndpointList, after: &EndpointList| {
            let key = (Arc::as_ptr(before) as usize, Arc::as_ptr(after) as usize);
            known.entry(key).or_insert_with(|| EndpointChanges::between(&before.value, &after.value)).clone()
        };
        let served: BTreeSet<&String> = self.proxies.values().map(|e| &e.reg.service).collect();
        let mut slices = HashMap::new();
        for service in served {
            let slice = slice::slice(&mesh.revision, &mesh.mesh, &self.service_parts, &self.endpoint_parts, service);
            let lines = match self.slices.get(service) {
                Some(last) if last.slice.version == slice.version => last.clone(),
                Some(last) => Arc::new(last.followed_by(slice, &mut changes)),
                None => Arc::new(SliceLines::new(slice)),
            };
            slices.insert(service.clone(), lines);
        }
        self.slices = slices.clone();
        Some(Snapshot { revision: mesh.revision.clone(), slices })
    }

    /// What the last snapshot published: its revision and each served service's slice.
    pub fn published(&self) -> Snapshot {
        let revision = self.mesh.as_ref().map(|m| m.revision.clone()).unwrap_or_default();
        Snapshot { revision, slices: self.slices.clone() }
    }

    /// The slice of `service` as last published.
    pub fn slice(&self, service: &str) -> Option<Arc<SliceLines>> {
        self.slices.get(service).cloned()
    }

    /// Every proxy with an open stream, here or on another replica, for the API and the
    /// dashboard. `replica` names this one.
    pub fn proxies(&self) -> Vec<ProxyView> {
        let current = self.mesh.as_ref().map(|m| m.revision.clone());
        let view = |reg: &Registration, status: MemberStatus, replica: Option<String>| {
            let applied_revision = status.acked.as_deref().map(revision_of).map(str::to_string);
            let synced = current.is_some() && applied_revision == current;
            ProxyView {
                id: reg.proxy_id.clone(),
                service: reg.service.clone(),
                version: reg.version.clone(),
                address: reg.inbound_addr.clone(),
                admin: reg.admin_addr.clone(),
                cert_expires: status.cert_expires,
                synced,
                applied_version: status.acked,
                applied_revision,
                nack: status.nack,
                last_seen: status.last_seen,
                lagging_since: (!synced).then(|| self.revision_since.max(status.joined_at)),
                replica,
            }
        };
        let mut views: BTreeMap<&str, ProxyView> = BTreeMap::new();
        for (id, m) in self.remote.iter().filter(|(_, m)| m.connected) {
            views.insert(id, view(&m.registration, m.status.clone(), Some(m.replica.clone())));
        }
        // Connected here: described as this replica knows it.
        for id in self.proxies.keys() {
            if let Some(Effect::Share(reg, status)) = self.share(id) {
                views.insert(id, view(&reg, status, None));
            }
        }
        views.into_values().collect()
    }
}

mod fleetwide;

#[cfg(test)]
mod churn;

#[cfg(test)]
mod tests;
