//! The compiled configuration: what proxies run, and the wire types that carry it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole mesh's routing at one policy revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshConfig {
    /// The git commit this configuration was compiled from.
    pub revision: String,
    pub services: BTreeMap<String, ServiceConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub name: String,
    pub versions: Vec<String>,
    /// Tried in order; the first rule whose matches apply decides the split.
    pub rules: Vec<RuleConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleConfig {
    /// Any one of these must apply; empty applies to every request.
    pub matches: Vec<MatchConfig>,
    pub backends: Vec<Backend>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchConfig {
    pub path: Option<PathConfig>,
    pub method: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathConfig {
    Exact(String),
    Prefix(String),
}

/// A version of a service and its share of a rule's traffic, in percent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub version: String,
    pub weight: u32,
}

impl ServiceConfig {
    /// The weight of each version in the rule that catches every request, for display.
    pub fn default_weights(&self) -> Vec<Backend> {
        self.rules
            .iter()
            .find(|r| r.matches.is_empty())
            .or(self.rules.last())
            .map(|r| r.backends.clone())
            .unwrap_or_default()
    }
}

/// A proxy instance that serves one version of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub version: String,
    /// The inbound listener other proxies connect to.
    pub addr: String,
    pub proxy_id: String,
}

/// What one proxy needs: the routes it may call, the endpoints behind them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// Changes whenever anything in this config changes; proxies ACK it.
    pub version: String,
    pub revision: String,
    pub services: BTreeMap<String, ServiceConfig>,
    pub endpoints: BTreeMap<String, Vec<Endpoint>>,
}

/// A proxy announcing itself on its config stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub proxy_id: String,
    pub service: String,
    pub version: String,
    /// Where other proxies reach this one's inbound listener.
    pub inbound_addr: String,
    pub admin_addr: String,
    pub proxy_version: String,
}

/// One line of the config stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamMessage {
    Config(ProxyConfig),
    /// Keeps idle streams alive through intermediaries and lets both sides notice a dead peer.
    Ping,
}

/// A proxy's answer to a pushed config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub proxy_id: String,
    pub version: String,
    /// `None` when applied; the reason when refused (a NACK), in which case the proxy keeps
    /// its previous config.
    pub error: Option<String>,
}
