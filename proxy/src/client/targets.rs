//! The control-plane replicas a proxy may follow, and the one it follows now. The proxy holds
//! one connection; when it is lost the proxy moves on to the next replica at once, and backs
//! off only once every replica has failed in a row. A name that resolves to several addresses
//! counts as that many replicas (a Kubernetes headless service, a DNS round robin).

use crate::sync::Locked;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// One replica: where to send plaintext requests, and the host its mTLS port is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `http(s)://host:port`, no trailing slash.
    pub base: String,
    pub host: Host,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A name that did not resolve when last looked up; the connector tries again.
    Name(String),
}

impl Target {
    /// The address of this replica's port `port` as a URL base.
    pub fn with_port(&self, port: u16) -> String {
        match &self.host {
            Host::Ip(ip) => format!("http://{}", SocketAddr::new(*ip, port)),
            Host::Name(name) => format!("http://{name}:{port}"),
        }
    }
}

pub struct Targets {
    /// As configured: `http://host:port` or `https://host:port` each.
    configured: Vec<String>,
    state: Mutex<Rotation>,
}

/// Which target is followed, and where the current run of failures began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub targets: Vec<Target>,
    pub current: usize,
    /// Failures in a row since the last success.
    pub failures: usize,
}

impl Rotation {
    /// The followed target failed: the next one is tried. True when every target has now
    /// failed in a row (time to back off, and to look names up again).
    pub fn fail(&mut self) -> bool {
        self.failures += 1;
        self.current = (self.current + 1) % self.targets.len().max(1);
        self.failures >= self.targets.len()
    }

    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    /// New targets (names looked up again), keeping the followed one when it is still there.
    pub fn replace(&mut self, targets: Vec<Target>) {
        if targets.is_empty() {
            return;
        }
        let current = self.targets.get(self.current).cloned();
        self.current = current.and_then(|c| targets.iter().position(|t| *t == c)).unwrap_or(0);
        self.targets = targets;
    }
}

impl Targets {
    /// Starts at a random one of `urls`, so that a fleet spreads over the replicas.
    pub fn new(urls: &[String]) -> Targets {
        let targets: Vec<Target> = urls.iter().map(|u| unresolved(u)).collect();
        let current = if targets.is_empty() { 0 } else { fastrand::usize(..targets.len()) };
        Targets { configured: urls.to_vec(), state: Mutex::new(Rotation { targets, current, failures: 0 }) }
    }

    pub fn current(&self) -> Option<Target> {
        let state = self.state.locked();
        state.targets.get(state.current).cloned()
    }

    /// See [`Rotation::fail`].
    pub fn fail(&self) -> bool {
        self.state.locked().fail()
    }

    pub fn succeed(&self) {
        self.state.locked().succeed()
    }

    /// Looks the configured names up again: each address is a target. An `https://` replica
    /// stays one target, dialled by its name: its certificate names the host, not an address.
    pub async fn resolve(&self) {
        let mut targets = Vec::new();
        for url in &self.configured {
            let Some(authority) = url.strip_prefix("http://") else {
                targets.push(unresolved(url));
                continue;
            };
            match tokio::net::lookup_host(authority).await {
                Ok(addrs) => {
                    let mut addrs: Vec<SocketAddr> = addrs.collect();
                    addrs.sort();
                    addrs.dedup();
                    targets.extend(
                        addrs.into_iter().map(|a| Target { base: format!("http://{a}"), host: Host::Ip(a.ip()) }),
                    );
                }
                Err(e) => {
                    tracing::debug!(%url, error = %e, "cannot resolve a control-plane address; trying it as named");
                    targets.push(unresolved(url));
                }
            }
        }
        self.state.locked().replace(targets);
    }
}

fn unresolved(url: &str) -> Target {
    let authority = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let host = match authority.parse::<SocketAddr>() {
        Ok(addr) => Host::Ip(addr.ip()),
        Err(_) => Host::Name(authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string()),
    };
    Target { base: url.to_string(), host }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(n: usize) -> Rotation {
        let targets = (0..n).map(|i| unresolved(&format!("http://10.0.0.{i}:8080"))).collect();
        Rotation { targets, current: 0, failures: 0 }
    }

    #[test]
    fn a_lost_replica_is_left_for_the_next_and_backoff_waits_for_a_full_round() {
        let mut r = rotation(3);
        assert!(!r.fail());
        assert_eq!(r.current, 1);
        assert!(!r.fail());
        assert!(r.fail(), "all three failed in a row");
        assert_eq!(r.current, 0);
        r.succeed();
        assert!(!r.fail(), "a success starts a new round");
        let mut one = rotation(1);
        assert!(one.fail(), "with one replica every failure is a full round");
    }

    #[test]
    fn looking_names_up_again_keeps_the_followed_replica() {
        let mut r = rotation(3);
        r.current = 2;
        let mut again = rotation(4).targets;
        again.rotate_left(1);
        r.replace(again.clone());
        assert_eq!(r.targets[r.current].base, "http://10.0.0.2:8080");
        r.replace(vec![]);
        assert_eq!(r.targets, again, "no answer keeps what was known");
    }

    #[test]
    fn targets_know_their_host_for_the_mtls_port() {
        assert_eq!(unresolved("http://10.1.2.3:8080").with_port(8443), "http://10.1.2.3:8443");
        assert_eq!(unresolved("http://[::1]:8080").with_port(8443), "http://[::1]:8443");
        assert_eq!(unresolved("http://cp.mesh:8080").with_port(8443), "http://cp.mesh:8443");
    }

    #[tokio::test]
    async fn a_name_resolves_to_a_target_per_address() {
        let t = Targets::new(&["http://localhost:8080".to_string(), "http://10.9.9.9:1".to_string()]);
        t.resolve().await;
        let state = t.state.locked().clone();
        assert!(state.targets.iter().any(|t| t.base == "http://127.0.0.1:8080"), "{state:?}");
        assert!(state.targets.iter().any(|t| t.base == "http://10.9.9.9:1"));
    }
}
