//! An applied config with what the data path precomputes from it: regular expressions are
//! compiled once per config, never per request, and each route's metric handles are found
//! once per config.

use crate::hash::Map;
use crate::metrics::{Handle, Metrics};
use std::sync::OnceLock;
use trellis_model::config::{HeaderValueMatch, PathConfig};
use trellis_model::telemetry::Direction;
use trellis_model::{ProxyConfig, RuleConfig, ServiceConfig};

#[derive(Default)]
pub struct Applied {
    pub config: ProxyConfig,
    regexes: Map<String, regex::Regex>,
    /// Per service, each rule.
    routes: Map<String, Vec<Rule>>,
    /// Who is at each endpoint address: its service, and its proxy's identity if it has one.
    by_addr: Map<String, (String, Option<String>)>,
    /// Each service, shareable by the requests placed on it.
    shared: Map<String, std::sync::Arc<trellis_model::ServiceConfig>>,
    /// The services with a rate limit of their own or on a rule, and the buckets of the
    /// former once found.
    limited: Map<String, OnceLock<Option<crate::SharedLimiter>>>,
}

impl Applied {
    /// Compiles every pattern; one that does not compile refuses the whole config (a NACK).
    pub fn new(config: ProxyConfig) -> Result<Self, String> {
        let mut regexes = Map::default();
        let matches = config.services.values().flat_map(|s| &s.rules).flat_map(|r| &r.matches);
        for m in matches {
            let path = match &m.path {
                Some(PathConfig::Regex(p)) => Some(p),
                _ => None,
            };
            let headers = m.headers.iter().filter_map(|h| match &h.value {
                HeaderValueMatch::Regex(p) => Some(p),
                _ => None,
            });
            for p in path.into_iter().chain(headers) {
                // Anchored: a route's regex describes the whole path or value, as in Gateway API.
                let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("regex {p:?}: {e}"))?;
                regexes.insert(p.clone(), re);
            }
        }
        let routes =
            config.services.iter().map(|(name, s)| (name.clone(), s.rules.iter().map(Rule::new).collect())).collect();
        let by_addr = config
            .endpoints
            .iter()
            .flat_map(|(service, all)| all.iter().map(move |e| (e.addr.clone(), (service.clone(), e.identity.clone()))))
            .collect();
        let shared = config.services.iter().map(|(name, s)| (name.clone(), std::sync::Arc::new(s.clone()))).collect();
        let limited = config
            .services
            .iter()
            .filter(|(_, s)| s.traffic.rate_limit.is_some() || s.rules.iter().any(|r| r.rate_limit.is_some()))
            .map(|(name, _)| (name.clone(), OnceLock::new()))
            .collect();
        Ok(Applied { config, regexes, routes, by_addr, shared, limited })
    }

    /// The service named `name`, to share with the requests placed on it.
    pub fn service(&self, name: &str) -> Option<&std::sync::Arc<trellis_model::ServiceConfig>> {
        self.shared.get(name)
    }

    /// Where requests that rule `rule` of `service` sent to its backend `backend` are
    /// counted: found in `metrics` by the first of them, then kept with this config.
    /// The retry budget rule `rule` of `service` draws on, found in `shared` once per config.
    pub fn budget(&self, service: &ServiceConfig, rule: usize, shared: &crate::Shared) -> Option<&crate::SharedBudget> {
        let r = self.routes.get(&service.name)?.get(rule)?;
        let config = &service.rules.get(rule)?.retry.budget;
        Some(r.budget.get_or_init(|| shared.budget(&service.name, config)))
    }

    /// Whether `service` limits its callers' rate at all: most do not, and pay nothing more.
    pub fn is_rate_limited(&self, service: &str) -> bool {
        self.limited.contains_key(service)
    }

    /// The buckets of `service`'s own rate limit (`rule` None) or of its rule `rule`'s, found
    /// in `shared` once per config, so that they carry on across swaps.
    pub fn limiter(
        &self,
        service: &ServiceConfig,
        rule: Option<usize>,
        shared: &crate::Shared,
    ) -> Option<&crate::SharedLimiter> {
        let (cell, config) = match rule {
            None => (self.limited.get(&service.name)?, service.traffic.rate_limit.as_ref()),
            Some(i) => (&self.routes.get(&service.name)?.get(i)?.limiter, service.rules.get(i)?.rate_limit.as_ref()),
        };
        cell.get_or_init(|| config.map(|c| shared.limiter(c))).as_ref()
    }

    pub fn handle(&self, service: &ServiceConfig, rule: usize, backend: usize, metrics: &Metrics) -> Option<Handle> {
        let r = self.routes.get(&service.name)?.get(rule)?;
        let version = &service.rules.get(rule)?.backends.get(backend)?.version;
        let find = || metrics.handle(Direction::Outbound, &service.name, version, &r.label);
        Some(r.handles.get(backend)?.get_or_init(find).clone())
    }

    /// Who the endpoint at `addr` must prove to be, when it has an identity.
    pub fn identity_at(&self, addr: &str) -> Option<&str> {
        self.by_addr.get(addr)?.1.as_deref()
    }

    /// The service whose endpoint is at `addr`.
    pub fn service_at(&self, addr: &str) -> Option<&str> {
        self.by_addr.get(addr).map(|(s, _)| s.as_str())
    }

    pub fn is_match(&self, pattern: &str, text: &str) -> bool {
        self.regexes.get(pattern).is_some_and(|re| re.is_match(text))
    }
}

/// A rule: its name as the metrics label it (`trellis diff` names alike), and its backends'
/// metric handles once found.
struct Rule {
    label: String,
    handles: Vec<OnceLock<Handle>>,
    budget: OnceLock<crate::SharedBudget>,
    limiter: OnceLock<Option<crate::SharedLimiter>>,
}

impl Rule {
    fn new(rule: &RuleConfig) -> Self {
        let handles = rule.backends.iter().map(|_| OnceLock::new()).collect();
        let label = trellis_model::diff::describe(rule);
        Rule { label, handles, budget: OnceLock::new(), limiter: OnceLock::new() }
    }
}

impl std::ops::Deref for Applied {
    type Target = ProxyConfig;
    fn deref(&self) -> &ProxyConfig {
        &self.config
    }
}
