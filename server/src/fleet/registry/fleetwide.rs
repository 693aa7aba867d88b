//! The registry's view of the whole fleet: the proxies connected to the other replicas (as the
//! database says), who joined and left the fleet (the leader's to record), and the endpoints
//! of every proxy, wherever it is connected.

use super::{Effect, Registry, system};
use crate::store::Member;
use serde_json::json;
use std::collections::BTreeMap;
use trellis_model::Endpoint;

impl Registry {
    /// This replica leads, or no longer does.
    pub fn set_leads(&mut self, leads: bool) {
        self.leads = leads;
    }

    /// The proxies of the other replicas, as the database says now. A proxy awaited after a
    /// restart that is connected elsewhere is not waited for.
    pub fn set_remote(&mut self, members: Vec<Member>, now: i64) -> Vec<Effect> {
        let remote: BTreeMap<String, Member> =
            members.into_iter().map(|m| (m.registration.proxy_id.clone(), m)).collect();
        let endpoints = |r: &Registry| r.endpoints();
        let before = endpoints(self);
        let changed = remote != self.remote;
        self.remote = remote;
        let mut effects = Vec::new();
        let was_waiting = !self.awaited.is_empty();
        let Registry { awaited, remote, .. } = self;
        awaited.retain(|id| !remote.get(id).is_some_and(|m| m.connected));
        if was_waiting && self.awaited.is_empty() {
            effects.extend([Effect::Publish, Effect::Release]);
        }
        if endpoints(self) != before {
            effects.push(Effect::PublishSoon);
        }
        effects.extend(self.judge(now));
        effects.extend(self.synced(now));
        if changed {
            effects.push(Effect::Changed);
        }
        // A row that says another replica has (or just lost) a proxy whose stream is here was
        // written late by that replica (two replicas' writes for a proxy that moved landed out
        // of order): this replica's own row is written again, or the others would never see
        // the proxy, as its row is refreshed only while it is this replica's.
        effects.extend(self.remote.keys().filter_map(|id| self.share(id)));
        effects
    }

    /// Proxy `id` connected here: a join when the fleet did not know it (the whole fleet is
    /// judged on the sweeps and looks at the others; this runs on every connect).
    pub(super) fn judge_one(&mut self, id: &str, now: i64) -> Vec<Effect> {
        let Some(e) = self.proxies.get(id) else { return vec![] };
        if self.members.contains_key(id) {
            return vec![];
        }
        let r = &e.reg;
        self.members.insert(id.to_string(), (r.service.clone(), r.version.clone()));
        if !self.leads {
            return vec![];
        }
        let summary = format!("proxy {id} ({}/{}) joined at {}", r.service, r.version, r.inbound_addr);
        let detail = json!({ "proxy_id": id, "version": r.version, "address": r.inbound_addr });
        vec![system(now, "proxy.joined", Some(&r.service), summary, detail)]
    }

    /// Who joined and left the whole fleet since the last look (the leader says so; the
    /// others only keep count).
    pub(super) fn judge(&mut self, now: i64) -> Vec<Effect> {
        let mut fleet: BTreeMap<String, (String, String, String)> = BTreeMap::new();
        for m in self.remote.values() {
            let r = &m.registration;
            fleet.insert(r.proxy_id.clone(), (r.service.clone(), r.version.clone(), r.inbound_addr.clone()));
        }
        for (id, e) in &self.proxies {
            fleet.insert(id.clone(), (e.reg.service.clone(), e.reg.version.clone(), e.reg.inbound_addr.clone()));
        }
        let mut effects = Vec::new();
        if self.leads {
            for (id, (service, version, addr)) in fleet.iter().filter(|(id, _)| !self.members.contains_key(*id)) {
                let summary = format!("proxy {id} ({service}/{version}) joined at {addr}");
                let detail = json!({ "proxy_id": id, "version": version, "address": addr });
                effects.push(system(now, "proxy.joined", Some(service), summary, detail));
            }
            for (id, (service, version)) in self.members.iter().filter(|(id, _)| !fleet.contains_key(*id)) {
                let summary = format!("proxy {id} ({service}/{version}) left");
                effects.push(system(now, "proxy.left", Some(service), summary, json!({ "proxy_id": id })));
            }
        }
        self.members = fleet.into_iter().map(|(id, (service, version, _))| (id, (service, version))).collect();
        effects
    }

    /// Every endpoint of the whole fleet, by service: the proxies here (a disconnected one
    /// stays until forgotten), and those connected elsewhere. A proxy connected here is
    /// described as it is here; one that left here for another replica, as it is there.
    pub(super) fn endpoints(&self) -> BTreeMap<String, Vec<Endpoint>> {
        let mut by_id: BTreeMap<&str, Endpoint> = BTreeMap::new();
        let mut service_of: BTreeMap<&str, &str> = BTreeMap::new();
        for (id, m) in &self.remote {
            let r = &m.registration;
            by_id.insert(
                id,
                Endpoint {
                    version: r.version.clone(),
                    addr: r.inbound_addr.clone(),
                    proxy_id: id.clone(),
                    identity: m.status.identity.clone(),
                },
            );
            service_of.insert(id, &r.service);
        }
        for (id, e) in &self.proxies {
            if e.stream.is_none() && self.remote.get(id).is_some_and(|m| m.connected) {
                continue;
            }
            let endpoint = Endpoint {
                version: e.reg.version.clone(),
                addr: e.reg.inbound_addr.clone(),
                proxy_id: id.clone(),
                identity: self.certs.get(id).map(|c| c.identity.clone()),
            };
            by_id.insert(id, endpoint);
            service_of.insert(id, &e.reg.service);
        }
        let mut endpoints: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for (id, endpoint) in by_id {
            endpoints.entry(service_of[id].to_string()).or_default().push(endpoint);
        }
        endpoints
    }
}
