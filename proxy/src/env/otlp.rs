//! The exporter's settings, from the standard `OTEL_*` variables (the OpenTelemetry SDK
//! environment specification), so a proxy is pointed at a collector the way every other
//! instrumented process is.

use std::time::Duration;

/// Every variable read, with its default and meaning, for `trellis-proxy --help`.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        "export a span per request over OTLP/HTTP (protobuf) to this collector (/v1/traces is appended); unset: no export",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "",
        "the same, the full URL of the traces endpoint; wins over the one above",
    ),
    ("OTEL_EXPORTER_OTLP_HEADERS", "", "headers for every export, as key=value,key=value (values URL-encoded)"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "", "the same, for traces; added to the ones above"),
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "", "a PEM file of the CA that signed an https:// collector's certificate"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "10000", "milliseconds an export may take"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "only http/protobuf is spoken"),
    ("OTEL_SERVICE_NAME", "", "the service.name of the exported spans (TRELLIS_SERVICE when unset)"),
    ("OTEL_RESOURCE_ATTRIBUTES", "", "more resource attributes, as key=value,key=value"),
    (
        "OTEL_TRACES_SAMPLER",
        "parentbased_always_on",
        "always_on, always_off, traceidratio, or parentbased_ of one of them: a sampled caller's trace is kept",
    ),
    ("OTEL_TRACES_SAMPLER_ARG", "1.0", "the ratio of new traces a traceidratio sampler keeps (0 to 1)"),
    ("OTEL_BSP_SCHEDULE_DELAY", "5000", "milliseconds between exports (sooner when a batch is full)"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "2048", "spans held for export at most: more are dropped, and counted"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512", "spans per export at most"),
    ("OTEL_TRACES_EXPORTER", "otlp", "otlp, or none to export nothing"),
    ("OTEL_SDK_DISABLED", "false", "true exports nothing"),
];

/// Which traces are recorded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Keeps this share of traces, by their id: every proxy keeps the same ones.
    Ratio(f64),
    /// A caller's decision (its `traceparent`'s sampled flag) stands; a new trace is decided by
    /// the inner sampler.
    ParentBased(Root),
}

/// The sampler of a trace that starts here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// The traces endpoint itself (`.../v1/traces`).
    pub endpoint: http::Uri,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub ca_file: Option<std::path::PathBuf>,
    pub timeout: Duration,
    /// `service.name` and the rest of the resource, in order.
    pub resource: Vec<(String, String)>,
    pub sampler: Sampler,
    pub delay: Duration,
    pub queue: usize,
    pub batch: usize,
}

impl Settings {
    /// `None` when no endpoint is set or export is turned off; every bad value is added to
    /// `errors`, named by its variable. `service`, `version` and `proxy_id` describe the proxy
    /// in the resource unless `OTEL_*` says otherwise.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        (service, version, proxy_id): (&str, &str, &str),
        errors: &mut Vec<String>,
    ) -> Option<Settings> {
        let get = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        // Every variable is read, whether export is on or not, so all are checked.
        let traces = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let base = get("OTEL_EXPORTER_OTLP_ENDPOINT");
        let disabled = match get("OTEL_SDK_DISABLED").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                errors.push(format!("OTEL_SDK_DISABLED={other:?} must be true or false"));
                false
            }
        };
        let exporter = get("OTEL_TRACES_EXPORTER").unwrap_or_else(|| "otlp".into());
        if exporter != "otlp" && exporter != "none" {
            errors.push(format!("OTEL_TRACES_EXPORTER={exporter:?}: trellis-proxy exports otlp, or none"));
        }
        if let Some(p) = get("OTEL_EXPORTER_OTLP_PROTOCOL").filter(|p| p != "http/protobuf") {
            errors.push(format!("OTEL_EXPORTER_OTLP_PROTOCOL={p:?}: trellis-proxy speaks http/protobuf only"));
        }
        let mut headers = Vec::new();
        for key in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            for (name, value) in pairs(key, get(key), errors) {
                match (http::HeaderName::try_from(name.as_str()), http::HeaderValue::try_from(value.as_str())) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => errors.push(format!("{key}: {name:?} is not a valid header")),
                }
            }
        }
        let mut number = |key: &str, default: u64, least: u64| match get(key) {
            None => default,
            Some(raw) => raw.parse::<u64>().ok().filter(|n| *n >= least).unwrap_or_else(|| {
                errors.push(format!("{key}={raw:?} must be a whole number of at least {least}"));
                default
            }),
        };
        let timeout = Duration::from_millis(number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000, 1));
        let delay = Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5_000, 1));
        let queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1) as usize;
        let batch = (number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1) as usize).min(queue);
        let sampler = sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"), errors);
        let mut resource = vec![
            ("service.name".to_string(), service.to_string()),
            ("service.version".to_string(), version.to_string()),
            ("service.instance.id".to_string(), proxy_id.to_string()),
        ];
        for (key, value) in pairs("OTEL_RESOURCE_ATTRIBUTES", get("OTEL_RESOURCE_ATTRIBUTES"), errors) {
            set(&mut resource, key, value);
        }
        if let Some(name) = get("OTEL_SERVICE_NAME") {
            set(&mut resource, "service.name".into(), name);
        }
        let ca_file = get("OTEL_EXPORTER_OTLP_CERTIFICATE").map(std::path::PathBuf::from);
        let endpoint = match (traces, base) {
            (Some(url), _) => url,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return None,
        };
        let endpoint = match endpoint.parse::<http::Uri>() {
            Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() => uri,
            _ => {
                errors.push(format!("the OTLP endpoint {endpoint:?} is not an http(s):// URL"));
                return None;
            }
        };
        if disabled || exporter == "none" {
            return None;
        }
        Some(Settings { endpoint, headers, ca_file, timeout, resource, sampler, delay, queue, batch })
    }
}

fn set(resource: &mut Vec<(String, String)>, key: String, value: String) {
    match resource.iter_mut().find(|(k, _)| *k == key) {
        Some(kept) => kept.1 = value,
        None => resource.push((key, value)),
    }
}

/// `key=value,key=value`, values percent-decoded (the W3C Baggage form the spec uses).
fn pairs(key: &str, raw: Option<String>, errors: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in raw.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=').map(|(k, v)| (k.trim(), percent_decode(v.trim()))) {
            Some((k, Some(v))) if !k.is_empty() => out.push((k.to_string(), v)),
            _ => errors.push(format!("{key}: {pair:?} is not key=value")),
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let (bytes, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn sampler(name: Option<String>, arg: Option<String>, errors: &mut Vec<String>) -> Sampler {
    let name = name.unwrap_or_else(|| "parentbased_always_on".into());
    let ratio = match &arg {
        None => 1.0,
        Some(raw) => raw.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).unwrap_or_else(|| {
            errors.push(format!("OTEL_TRACES_SAMPLER_ARG={raw:?} must be a ratio from 0 to 1"));
            1.0
        }),
    };
    let (parent_based, root) = match name.strip_prefix("parentbased_") {
        Some(root) => (true, root),
        None => (false, name.as_str()),
    };
    let root = match root {
        "always_on" => Root::AlwaysOn,
        "always_off" => Root::AlwaysOff,
        "traceidratio" => Root::Ratio(ratio),
        _ => {
            errors.push(format!(
                "OTEL_TRACES_SAMPLER={name:?} is not always_on, always_off, traceidratio or parentbased_ of one"
            ));
            Root::AlwaysOn
        }
    };
    match (parent_based, root) {
        (true, root) => Sampler::ParentBased(root),
        (false, Root::AlwaysOn) => Sampler::AlwaysOn,
        (false, Root::AlwaysOff) => Sampler::AlwaysOff,
        (false, Root::Ratio(r)) => Sampler::Ratio(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(env: &[(&str, &str)]) -> (Option<Settings>, Vec<String>) {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut errors = Vec::new();
        let s = Settings::from_lookup(&|k| env.get(k).cloned(), ("inventory", "v2", "inventory-v2-1"), &mut errors);
        (s, errors)
    }

    #[test]
    fn no_endpoint_no_export_and_the_spec_defaults_otherwise() {
        assert!(read(&[]).0.is_none());
        let (s, errors) = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        let s = s.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.sampler, Sampler::ParentBased(Root::AlwaysOn));
        assert_eq!((s.queue, s.batch, s.delay, s.timeout.as_millis()), (2048, 512, Duration::from_secs(5), 10_000));
        assert_eq!(s.resource[0], ("service.name".into(), "inventory".into()));
        assert_eq!(s.resource[2], ("service.instance.id".into(), "inventory-v2-1".into()));
    }

    #[test]
    fn the_standard_variables_set_what_they_name() {
        let (s, errors) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://collector.example:443/otlp/traces"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s%3Dcret, tenant=a"),
            ("OTEL_SERVICE_NAME", "inventory-sidecar"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=x,deployment.environment=prod"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ]);
        let s = s.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.endpoint, "https://collector.example:443/otlp/traces");
        assert_eq!(s.headers[0].1, "s=cret");
        assert_eq!(s.headers.len(), 2);
        assert_eq!(s.resource[0].1, "inventory-sidecar", "OTEL_SERVICE_NAME wins over the resource attribute");
        assert!(s.resource.contains(&("deployment.environment".into(), "prod".into())));
        assert_eq!(s.sampler, Sampler::ParentBased(Root::Ratio(0.25)));
        assert_eq!(s.batch, 100, "a batch never exceeds the queue");
    }

    #[test]
    fn bad_values_are_each_reported_and_export_can_be_turned_off() {
        let (_, errors) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ]);
        let text = errors.join("\n");
        for needle in [
            "\"collector:4318/v1/traces\" is not",
            "http/protobuf only",
            "\"novalue\" is not key=value",
            "sometimes",
            "SCHEDULE_DELAY",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let (_, errors) = read(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]);
        assert!(errors.join("").contains("from 0 to 1"), "checked without an endpoint too: {errors:?}");
        for off in [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")] {
            let (s, errors) = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]);
            assert!(s.is_none() && errors.is_empty(), "{off:?}: {errors:?}");
        }
    }
}
