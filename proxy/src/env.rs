//! Proxy settings from the environment. Every variable is read and every bad value reported
//! together, so an operator fixes a deployment in one round.

pub mod otlp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const ENV_SERVICE: &str = "TRELLIS_SERVICE";
pub const ENV_VERSION: &str = "TRELLIS_VERSION";
pub const ENV_PROXY_ID: &str = "TRELLIS_PROXY_ID";
pub const ENV_OUTBOUND_ADDR: &str = "TRELLIS_OUTBOUND_ADDR";
pub const ENV_INBOUND_ADDR: &str = "TRELLIS_INBOUND_ADDR";
pub const ENV_ADMIN_ADDR: &str = "TRELLIS_ADMIN_ADDR";
pub const ENV_APP_ADDR: &str = "TRELLIS_APP_ADDR";
pub const ENV_ADVERTISE_IP: &str = "TRELLIS_ADVERTISE_IP";
pub const ENV_CONTROL_PLANE_URL: &str = "TRELLIS_CONTROL_PLANE_URL";
pub const ENV_CONTROL_PLANE_CA: &str = "TRELLIS_CONTROL_PLANE_CA";
pub const ENV_DRAIN_GRACE: &str = "TRELLIS_DRAIN_GRACE_SECS";
pub const ENV_HEADER_READ_TIMEOUT: &str = "TRELLIS_HEADER_READ_TIMEOUT_SECS";
pub const ENV_MAX_CONCURRENT: &str = "TRELLIS_MAX_CONCURRENT_REQUESTS";
pub const ENV_ACCESS_LOG: &str = "TRELLIS_ACCESS_LOG";
pub const ENV_CONFIG_FILE: &str = "TRELLIS_CONFIG_FILE";
pub const ENV_WORKER_THREADS: &str = "TRELLIS_WORKER_THREADS";
pub const ENV_JOIN_TOKEN: &str = "TRELLIS_JOIN_TOKEN";
pub const ENV_IDENTITY_DIR: &str = "TRELLIS_IDENTITY_DIR";
pub const ENV_IO_URING: &str = "TRELLIS_IO_URING";
pub const ENV_TCP_UPSTREAMS: &str = "TRELLIS_TCP_UPSTREAMS";

/// Every setting, for `trellis-proxy --help`: its name, its default ("" when it has none) and
/// what it does. A test checks that these are exactly the variables [`Settings::from_lookup`]
/// reads.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (ENV_SERVICE, "", "required: the mesh service this proxy fronts, as named in policy"),
    (ENV_VERSION, "", "required: the version of it this instance runs (v1, v2, ...)"),
    (
        ENV_CONTROL_PLANE_URL,
        "",
        "required without TRELLIS_CONFIG_FILE: http(s)://HOST:PORT of the control plane; replicas separated by commas",
    ),
    (
        ENV_CONTROL_PLANE_CA,
        "",
        "a PEM file of the CA that signed an https:// control plane's certificate, if not a system root",
    ),
    (ENV_JOIN_TOKEN, "", "proves the service to the control plane once, for an mTLS certificate (trellis join-token)"),
    (ENV_IDENTITY_DIR, "", "instead of a join token: a directory of cert.pem, key.pem and anchor.pem"),
    (ENV_CONFIG_FILE, "", "standalone mode: a static config (JSON, as /config prints it), no control plane"),
    (ENV_OUTBOUND_ADDR, "127.0.0.1:4140", "where the application sends its requests to the mesh"),
    (ENV_INBOUND_ADDR, "0.0.0.0:4143", "where other proxies reach this service"),
    (ENV_ADMIN_ADDR, "127.0.0.1:4191", "/live, /ready, /metrics and /config"),
    (ENV_APP_ADDR, "127.0.0.1:8080", "the local application that inbound requests go to"),
    (ENV_ADVERTISE_IP, "", "the address other proxies use to reach this one when the inbound listener binds 0.0.0.0"),
    (ENV_TCP_UPSTREAMS, "", "local listeners for protocol: tcp services, as SERVICE=ADDR,SERVICE=ADDR"),
    (ENV_PROXY_ID, "SERVICE-VERSION-RANDOM", "this instance's name in the fleet"),
    (ENV_DRAIN_GRACE, "10", "seconds requests in flight may take to finish after SIGTERM"),
    (ENV_HEADER_READ_TIMEOUT, "30", "seconds a client has to send each request's head"),
    (ENV_MAX_CONCURRENT, "10000", "requests in flight per listener beyond which new ones are answered 503"),
    (ENV_WORKER_THREADS, "1", "runtime threads (1 to 64)"),
    (ENV_IO_URING, "true", "batch socket writes through io_uring on one thread"),
    (ENV_ACCESS_LOG, "false", "one structured log event per request, on the access target"),
    ("TRELLIS_LOG", "info", "log filter, as RUST_LOG (trellis_proxy=debug,access=info)"),
    ("TRELLIS_LOG_FORMAT", "text", "text, or json: one JSON object per line (access events carry trace_id)"),
];

/// What `trellis-proxy --help` prints.
pub fn help() -> String {
    let mut out = String::from(concat!(
        "trellis-proxy ",
        env!("CARGO_PKG_VERSION"),
        ": the Trellis sidecar proxy.\n\n",
        "Usage: trellis-proxy [--help | --version | --env-example | --probe]\n\n",
        "--probe asks the proxy at TRELLIS_ADMIN_ADDR whether it is ready (a container's health check).\n\n",
        "Configured by environment variables (default in brackets):\n",
    ));
    for (name, default, meaning) in SETTINGS.iter().chain(otlp::SETTINGS) {
        let default = if default.is_empty() { String::new() } else { format!(" [{default}]") };
        out.push_str(&format!("  {name}{default}\n      {meaning}\n"));
    }
    out
}

/// What `trellis-proxy --env-example` prints: every setting as an environment file (the
/// systemd unit's `/etc/trellis/proxy/SERVICE.env`), required ones to fill in, the rest
/// commented out at their defaults.
pub fn env_example() -> String {
    let mut out = String::from("# trellis-proxy settings (trellis-proxy --help says the same).\n");
    for (name, default, meaning) in SETTINGS.iter().chain(otlp::SETTINGS) {
        let required = meaning.starts_with("required");
        let _ = std::fmt::Write::write_fmt(
            &mut out,
            format_args!("\n# {meaning}\n{}{name}={default}\n", if required { "" } else { "#" }),
        );
    }
    out
}

/// nginx's `client_header_timeout` is 60 s; a sidecar's clients are local and quick.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Settings {
    pub service: String,
    pub version: String,
    /// Unique per process; the control plane tracks sync status by it.
    pub proxy_id: String,
    pub outbound_addr: SocketAddr,
    pub inbound_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The local application behind the inbound listener.
    pub app_addr: SocketAddr,
    /// The address other proxies use to reach this one, when listeners bind a wildcard.
    pub advertise_ip: Option<IpAddr>,
    /// The control plane's replicas, e.g. `http://10.0.0.5:8080`; the proxy follows one at a
    /// time and moves to the next when it is lost.
    pub control_planes: Vec<String>,
    /// The CA of an `https://` control plane's certificate, when the system does not trust it.
    pub control_plane_ca: Option<std::path::PathBuf>,
    /// How long requests in flight may take to finish after a shutdown signal.
    pub drain_grace: Duration,
    /// A client must send each request's head within this, idle keep-alive included (nginx's
    /// `client_header_timeout`): a silent or slow connection is closed, never held.
    pub header_read_timeout: Duration,
    /// Requests in flight per listener beyond this are answered 503 at once (load shedding).
    pub max_concurrent_requests: usize,
    /// One structured event per request on the `access` target; off by default (it costs).
    pub access_log: bool,
    /// Standalone mode: a static config (JSON, as `/config` prints it) instead of a control plane.
    pub config_file: Option<std::path::PathBuf>,
    /// Runtime threads of the binary.
    pub worker_threads: usize,
    /// Socket writes of a single-threaded runtime batched through io_uring (see `batch`); on by
    /// default, off to write each straight to its socket.
    pub io_uring: bool,
    /// Proves this proxy's service to the control plane once, for its certificate
    /// (`trellis join-token SERVICE`); without it the proxy runs without an identity.
    pub join_token: Option<Secret>,
    /// Instead of a join token: a directory holding `cert.pem` (leaf then issuer), `key.pem`
    /// and `anchor.pem`, as `trellis issue-cert` writes them (standalone meshes, benches).
    pub identity_dir: Option<std::path::PathBuf>,
    /// `protocol: tcp` services the application calls, each on a local listener of its own
    /// (`TRELLIS_TCP_UPSTREAMS=postgres=127.0.0.1:15432,broker=127.0.0.1:15672`).
    pub tcp_upstreams: Vec<(String, SocketAddr)>,
    /// Span export to an OpenTelemetry collector, from the standard `OTEL_*` variables.
    pub otlp: Option<otlp::Settings>,
}

/// A value that must not reach logs: its Debug output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid proxy settings:\n  {}", .0.join("\n  "))]
pub struct SettingsError(pub Vec<String>);

/// The replicas `TRELLIS_CONTROL_PLANE_URL` lists, comma-separated, without trailing slashes.
pub fn control_plane_urls(raw: &str) -> Vec<String> {
    raw.split(',').map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()).collect()
}

/// `SERVICE=ADDRESS` pairs, comma-separated; each bad one is reported.
fn tcp_upstreams(raw: &str, errors: &mut Vec<String>) -> Vec<(String, SocketAddr)> {
    let mut out: Vec<(String, SocketAddr)> = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(service, addr)| {
            let (service, addr) = (service.trim(), addr.trim());
            let named = !service.is_empty()
                && service.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            Some((service.to_string(), addr.parse::<SocketAddr>().ok().filter(|_| named)?))
        });
        match parsed {
            Some((service, _)) if out.iter().any(|(s, _)| *s == service) => {
                errors.push(format!("{ENV_TCP_UPSTREAMS}: {service} is listed twice"));
            }
            Some(upstream) => out.push(upstream),
            None => errors
                .push(format!("{ENV_TCP_UPSTREAMS}: {pair:?} is not SERVICE=ADDRESS, like postgres=127.0.0.1:15432")),
        }
    }
    out
}

impl Settings {
    /// Whether this proxy is meant to have an identity: then it speaks and demands mTLS.
    pub fn has_identity(&self) -> bool {
        self.join_token.is_some() || self.identity_dir.is_some()
    }

    /// Settings with defaults for everything but identity and the control plane; ports are 0
    /// (any free port), which suits tests that start many proxies.
    pub fn new(service: &str, version: &str, app_addr: SocketAddr, control_plane_url: &str) -> Self {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Settings {
            service: service.to_string(),
            version: version.to_string(),
            proxy_id: format!("{service}-{version}-{:08x}", fastrand::u32(..)),
            outbound_addr: any,
            inbound_addr: any,
            admin_addr: any,
            app_addr,
            advertise_ip: None,
            control_planes: control_plane_urls(control_plane_url),
            control_plane_ca: None,
            drain_grace: Duration::from_secs(10),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_concurrent_requests: 10_000,
            access_log: false,
            join_token: None,
            identity_dir: None,
            config_file: None,
            worker_threads: 1,
            io_uring: true,
            tcp_upstreams: Vec::new(),
            otlp: None,
        }
    }

    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut errors = Vec::new();
        let mut required = |key: &str| {
            get(key).filter(|v| !v.is_empty()).unwrap_or_else(|| {
                errors.push(format!("{key} is required"));
                String::new()
            })
        };
        let service = required(ENV_SERVICE);
        let version = required(ENV_VERSION);
        let config_file = get(ENV_CONFIG_FILE).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
        // Standalone proxies need no control plane.
        let control_plane_url = match &config_file {
            Some(_) => get(ENV_CONTROL_PLANE_URL).unwrap_or_default(),
            None => required(ENV_CONTROL_PLANE_URL),
        };
        let control_planes = control_plane_urls(&control_plane_url);
        let mut addr = |key: &str, default: &str| {
            let raw = get(key).unwrap_or_else(|| default.to_string());
            raw.parse::<SocketAddr>().unwrap_or_else(|e| {
                errors.push(format!("{key}={raw:?} is not an address like 127.0.0.1:4140 ({e})"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        // The ports Linkerd users know: outbound 4140, inbound 4143, admin 4191.
        let outbound_addr = addr(ENV_OUTBOUND_ADDR, "127.0.0.1:4140");
        let inbound_addr = addr(ENV_INBOUND_ADDR, "0.0.0.0:4143");
        let admin_addr = addr(ENV_ADMIN_ADDR, "127.0.0.1:4191");
        let app_addr = addr(ENV_APP_ADDR, "127.0.0.1:8080");
        let advertise_ip = get(ENV_ADVERTISE_IP).and_then(|raw| {
            raw.parse::<IpAddr>()
                .map_err(|e| errors.push(format!("{ENV_ADVERTISE_IP}={raw:?} is not an IP address ({e})")))
                .ok()
        });
        let mut seconds = |key: &str, default: Duration| match get(key) {
            None => default,
            Some(raw) => raw.parse::<u64>().map(Duration::from_secs).unwrap_or_else(|_| {
                errors.push(format!("{key}={raw:?} is not a whole number of seconds"));
                default
            }),
        };
        let drain_grace = seconds(ENV_DRAIN_GRACE, Duration::from_secs(10));
        let header_read_timeout = seconds(ENV_HEADER_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT);
        if header_read_timeout.is_zero() {
            errors.push(format!("{ENV_HEADER_READ_TIMEOUT} must be at least 1"));
        }
        let max_concurrent_requests = match get(ENV_MAX_CONCURRENT) {
            None => 10_000,
            Some(raw) => raw.parse::<usize>().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                errors.push(format!("{ENV_MAX_CONCURRENT}={raw:?} is not a positive whole number"));
                10_000
            }),
        };
        let worker_threads = match get(ENV_WORKER_THREADS) {
            None => 1,
            Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=64).contains(n)).unwrap_or_else(|| {
                errors.push(format!("{ENV_WORKER_THREADS}={raw:?} must be a whole number from 1 to 64"));
                1
            }),
        };
        let mut flag = |key: &str, default: bool| match get(key).as_deref() {
            None | Some("") => default,
            Some("0" | "false" | "off") => false,
            Some("1" | "true" | "on") => true,
            Some(other) => {
                errors.push(format!("{key}={other:?} must be true or false"));
                default
            }
        };
        let access_log = flag(ENV_ACCESS_LOG, false);
        let io_uring = flag(ENV_IO_URING, true);
        for url in &control_planes {
            let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
            if rest.and_then(|rest| rest.parse::<http::uri::Authority>().ok()).is_none() {
                errors.push(format!(
                    "{ENV_CONTROL_PLANE_URL}: {url:?} is not http(s)://HOST:PORT (several replicas are separated by commas)"
                ));
            }
        }
        let tcp_upstreams = tcp_upstreams(&get(ENV_TCP_UPSTREAMS).unwrap_or_default(), &mut errors);
        let proxy_id = get(ENV_PROXY_ID).unwrap_or_else(|| format!("{service}-{version}-{:08x}", fastrand::u32(..)));
        let otlp = otlp::Settings::from_lookup(&get, (&service, &version, &proxy_id), &mut errors);
        if !errors.is_empty() {
            return Err(SettingsError(errors));
        }
        Ok(Settings {
            service,
            version,
            proxy_id,
            outbound_addr,
            inbound_addr,
            admin_addr,
            app_addr,
            advertise_ip,
            control_planes,
            control_plane_ca: get(ENV_CONTROL_PLANE_CA).filter(|v| !v.is_empty()).map(std::path::PathBuf::from),
            drain_grace,
            header_read_timeout,
            max_concurrent_requests,
            access_log,
            config_file,
            worker_threads,
            io_uring,
            join_token: get(ENV_JOIN_TOKEN).filter(|t| !t.trim().is_empty()).map(|t| Secret(t.trim().to_string())),
            identity_dir: get(ENV_IDENTITY_DIR).filter(|v| !v.is_empty()).map(std::path::PathBuf::from),
            tcp_upstreams,
            otlp,
        })
    }

    /// The address to announce for a bound listener.
    pub fn advertise(&self, bound: SocketAddr) -> SocketAddr {
        let ip = match (self.advertise_ip, bound.ip()) {
            (Some(ip), _) => ip,
            (None, ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, ip) => ip,
        };
        SocketAddr::new(ip, bound.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_bad_value_is_reported() {
        let env: HashMap<&str, &str> =
            [(ENV_OUTBOUND_ADDR, "nope"), (ENV_DRAIN_GRACE, "soon"), (ENV_IO_URING, "maybe")].into();
        let err = Settings::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        let text = err.to_string();
        for needle in
            [ENV_SERVICE, ENV_VERSION, ENV_CONTROL_PLANE_URL, ENV_OUTBOUND_ADDR, ENV_DRAIN_GRACE, ENV_IO_URING]
        {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn help_lists_exactly_the_settings_read_with_their_defaults() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let required: HashMap<&str, &str> =
            [(ENV_SERVICE, "a"), (ENV_VERSION, "v1"), (ENV_CONTROL_PLANE_URL, "http://cp:8080")].into();
        let s = Settings::from_lookup(|k| {
            read.borrow_mut().insert(k.to_string());
            required.get(k).map(|v| v.to_string())
        })
        .unwrap();
        // TRELLIS_LOG and TRELLIS_LOG_FORMAT are read by the binary before the settings.
        let listed: std::collections::BTreeSet<String> = SETTINGS
            .iter()
            .chain(otlp::SETTINGS)
            .map(|(name, ..)| name.to_string())
            .filter(|n| n != "TRELLIS_LOG" && n != "TRELLIS_LOG_FORMAT")
            .collect();
        assert_eq!(read.into_inner(), listed);
        let default = |name: &str| SETTINGS.iter().find(|(n, ..)| *n == name).unwrap().1;
        for (name, actual) in [
            (ENV_OUTBOUND_ADDR, s.outbound_addr.to_string()),
            (ENV_INBOUND_ADDR, s.inbound_addr.to_string()),
            (ENV_ADMIN_ADDR, s.admin_addr.to_string()),
            (ENV_APP_ADDR, s.app_addr.to_string()),
            (ENV_DRAIN_GRACE, s.drain_grace.as_secs().to_string()),
            (ENV_HEADER_READ_TIMEOUT, s.header_read_timeout.as_secs().to_string()),
            (ENV_MAX_CONCURRENT, s.max_concurrent_requests.to_string()),
            (ENV_WORKER_THREADS, s.worker_threads.to_string()),
            (ENV_IO_URING, s.io_uring.to_string()),
            (ENV_ACCESS_LOG, s.access_log.to_string()),
        ] {
            assert_eq!(default(name), actual, "{name}");
        }
        assert!(help().contains("TRELLIS_TCP_UPSTREAMS\n      local listeners"));
    }

    #[test]
    fn defaults_follow_linkerd_ports() {
        let env: HashMap<&str, &str> =
            [(ENV_SERVICE, "a"), (ENV_VERSION, "v1"), (ENV_CONTROL_PLANE_URL, "http://cp:8080/")].into();
        let s = Settings::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(s.outbound_addr.port(), 4140);
        assert_eq!(s.control_planes, vec!["http://cp:8080"]);
        assert_eq!(s.advertise(s.inbound_addr).to_string(), "127.0.0.1:4143");
        assert!(s.io_uring && !s.access_log);
    }

    #[test]
    fn tcp_upstreams_are_service_address_pairs() {
        let mut errors = Vec::new();
        let got = tcp_upstreams("postgres=127.0.0.1:15432, broker = 127.0.0.1:15672,", &mut errors);
        assert_eq!(
            got,
            vec![
                ("postgres".into(), "127.0.0.1:15432".parse().unwrap()),
                ("broker".into(), "127.0.0.1:15672".parse().unwrap())
            ]
        );
        assert!(errors.is_empty());
        tcp_upstreams("postgres=localhost:5432,Bad=127.0.0.1:1,x=127.0.0.1:1,x=127.0.0.1:2,nothing", &mut errors);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[3].contains("\"nothing\" is not SERVICE=ADDRESS"), "{errors:?}");
    }

    #[test]
    fn several_control_plane_replicas_are_listed_with_commas() {
        let env: HashMap<&str, &str> =
            [(ENV_SERVICE, "a"), (ENV_VERSION, "v1"), (ENV_CONTROL_PLANE_URL, "http://cp-0:8080, http://cp-1:8080/,")]
                .into();
        let s = Settings::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(s.control_planes, vec!["http://cp-0:8080", "http://cp-1:8080"]);
        let env: HashMap<&str, &str> =
            [(ENV_SERVICE, "a"), (ENV_VERSION, "v1"), (ENV_CONTROL_PLANE_URL, "https://cp-0:8443,ftp://cp-1")].into();
        let err = Settings::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap_err().to_string();
        assert!(err.contains("\"ftp://cp-1\" is not http(s)://HOST:PORT"), "{err}");
        assert!(!err.contains("cp-0"), "https is a control plane's scheme too: {err}");
    }
}
