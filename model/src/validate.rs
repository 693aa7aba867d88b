//! Rules that span resources and files. Every violation is reported, not just the first.
//!
//! # Layout
//! - this file: the walk over resources, names and references.
//! - [`rules`]: a Route's rules (matches, weights, shadowing, timeouts, retries, faults).
//! - [`resources`]: Mesh, TrafficPolicy, AccessPolicy, Rollout and Notification.

mod resources;
mod rules;

use crate::diagnostic::{Code, Diagnostic, Pos};
use crate::policy::{Located, Policy, Sp};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

pub fn validate(policy: &Policy) -> Result<(), Vec<Diagnostic>> {
    let mut cx = Cx::default();
    for svc in &policy.services {
        let (here, s) = (svc.here(), &svc.value);
        cx.name(&here, &s.name);
        cx.unique("Service", &here, &s.name);
        if s.versions.is_empty() {
            let msg = format!("service `{}` declares no versions", s.name.value);
            cx.push(Code::NoVersions, &here, &s.name, msg);
        }
        let mut versions = BTreeSet::new();
        for v in &s.versions {
            cx.name(&here, v);
            if !versions.insert(v.value.clone()) {
                let msg = format!("service `{}` lists version `{}` twice", s.name.value, v.value);
                cx.push(Code::DuplicateVersion, &here, v, msg);
            }
        }
        if let Some(port) = &s.port {
            cx.range(&here, port, 1, u16::MAX, "port");
        }
        cx.services.insert(s.name.value.clone(), versions);
        if s.protocol == crate::policy::Protocol::Tcp {
            cx.tcp.insert(s.name.value.clone());
        }
    }
    resources::meshes(&mut cx, &policy.meshes);
    let mut routed = BTreeMap::new();
    for route in &policy.routes {
        let (here, r) = (route.here(), &route.value);
        cx.name(&here, &r.name);
        cx.unique("Route", &here, &r.name);
        cx.one_per_service("Route", &here, &r.service, &r.name, &mut routed);
        if let Some(versions) = cx.service(&here, &r.service) {
            let service = policy.services.iter().find(|s| s.value.name.value == r.service.value);
            let protocol = service.map(|s| s.value.protocol).unwrap_or_default();
            rules::check(&mut cx, &here, (&r.service.value, protocol), &versions, &r.rules);
        }
    }
    resources::traffic_policies(&mut cx, &policy.traffic_policies);
    resources::access_policies(&mut cx, &policy.access_policies);
    resources::rollouts(&mut cx, &policy.rollouts);
    resources::notifications(&mut cx, &policy.notifications);

    let mut errors = cx.errors;
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    errors.dedup();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The secrets a valid policy names that `is_set` says are not set: checked on the control
/// plane that will use them, against its environment, when it judges a revision.
pub fn secrets(policy: &Policy, is_set: &dyn Fn(&str) -> bool) -> Vec<Diagnostic> {
    let mut cx = Cx::default();
    for n in &policy.notifications {
        let here = n.here();
        for name in resources::secret_names(&n.value) {
            if !is_set(&name.value) {
                let msg = format!(
                    "notification `{}` names `{}`, which is not set in the control plane's environment",
                    n.value.name.value, name.value
                );
                cx.push(Code::SecretReference, &here, name, msg);
            }
        }
    }
    cx.errors
}

/// Where a resource was written: turns document positions into file positions.
pub(crate) struct Here<'a> {
    pub file: &'a str,
    offset: u32,
    /// The resource's own position, for problems with no better place.
    pub pos: Pos,
}

impl<T> Located<T> {
    pub(crate) fn here(&self) -> Here<'_> {
        Here { file: &self.file, offset: self.line_offset, pos: self.pos }
    }
}

impl Here<'_> {
    pub fn at<T>(&self, s: &Sp<T>) -> Pos {
        let p = s.pos;
        Pos { line: if p.line == 0 { self.pos.line } else { p.line + self.offset }, ..p }
    }
}

/// The validation context: what is known so far and what was found wrong.
#[derive(Default)]
pub(crate) struct Cx {
    pub errors: Vec<Diagnostic>,
    /// Service name → versions.
    pub services: BTreeMap<String, BTreeSet<String>>,
    /// The services of `protocol: tcp`.
    pub tcp: BTreeSet<String>,
    seen: BTreeMap<(&'static str, String), (String, Pos)>,
}

impl Cx {
    pub fn push<T>(&mut self, code: Code, here: &Here, at: &Sp<T>, message: String) {
        self.errors.push(Diagnostic::new(code, here.file, here.at(at), message));
    }

    pub fn push_at(&mut self, code: Code, here: &Here, pos: Pos, message: String) {
        self.errors.push(Diagnostic::new(code, here.file, pos, message));
    }

    /// Names end up in hostnames, metric labels and identities, so they are DNS labels.
    pub fn name(&mut self, here: &Here, name: &Sp<String>) {
        let n = name.value.as_str();
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && !n.ends_with('-')
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            self.push(Code::InvalidName, here, name, format!("`{n}` is not a valid name"));
        }
    }

    pub fn unique(&mut self, kind: &'static str, here: &Here, name: &Sp<String>) {
        let at = here.at(name);
        if let Some((file, first)) = self.seen.get(&(kind, name.value.clone())) {
            let msg = format!("{kind} `{}` is already defined at {file}:{}:{}", name.value, first.line, first.column);
            self.push_at(Code::DuplicateName, here, at, msg);
        } else {
            self.seen.insert((kind, name.value.clone()), (here.file.to_string(), at));
        }
    }

    /// Records `owner` as the one `kind` of `service`, reporting a second one.
    pub fn one_per_service(
        &mut self,
        kind: &str,
        here: &Here,
        service: &Sp<String>,
        owner: &Sp<String>,
        taken: &mut BTreeMap<String, String>,
    ) {
        if let Some(first) = taken.insert(service.value.clone(), owner.value.clone()) {
            let msg = format!("service `{}` already has {kind} `{first}`", service.value);
            let code = if kind == "Rollout" { Code::DuplicateRollout } else { Code::DuplicateTarget };
            self.push(code, here, service, msg);
        }
    }

    /// The versions of a referenced service, or an error with a suggestion.
    pub fn service(&mut self, here: &Here, name: &Sp<String>) -> Option<BTreeSet<String>> {
        if let Some(v) = self.services.get(&name.value) {
            return Some(v.clone());
        }
        let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
        let msg = format!("unknown service `{}`{}", name.value, crate::parse::suggest(&name.value, &known));
        self.push(Code::UnknownService, here, name, msg);
        None
    }

    pub fn version(&mut self, here: &Here, service: &str, versions: &BTreeSet<String>, v: &Sp<String>) -> bool {
        if versions.contains(&v.value) {
            return true;
        }
        let known: Vec<&str> = versions.iter().map(String::as_str).collect();
        let msg = format!(
            "service `{service}` has no version `{}` (it has {}){}",
            v.value,
            known.join(", "),
            crate::parse::suggest(&v.value, &known)
        );
        self.push(Code::UnknownVersion, here, v, msg);
        false
    }

    /// Milliseconds of a duration within `min..=max`.
    pub fn duration(&mut self, here: &Here, d: &Sp<String>, min_ms: u64, max_ms: u64, what: &str) -> Option<u64> {
        match crate::duration::parse_ms(&d.value) {
            Err(e) => {
                self.push(Code::InvalidDuration, here, d, format!("{what}: {e}"));
                None
            }
            Ok(ms) if ms < min_ms || ms > max_ms => {
                let (lo, hi) = (crate::duration::format_ms(min_ms), crate::duration::format_ms(max_ms));
                self.push(Code::OutOfRange, here, d, format!("{what} `{}` is outside {lo} to {hi}", d.value));
                None
            }
            Ok(ms) => Some(ms),
        }
    }

    pub fn range<N: PartialOrd + Display + Copy>(&mut self, here: &Here, v: &Sp<N>, lo: N, hi: N, what: &str) -> bool {
        let ok = v.value >= lo && v.value <= hi;
        if !ok {
            self.push(Code::OutOfRange, here, v, format!("{what} is {}, outside {lo} to {hi}", v.value));
        }
        ok
    }

    pub fn regex(&mut self, here: &Here, pattern: &Sp<String>) {
        if let Err(e) = regex_lite::Regex::new(&pattern.value) {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            self.push(
                Code::InvalidRegex,
                here,
                pattern,
                format!("regex `{}` does not compile: {first}", pattern.value),
            );
        }
    }

    /// A calling service named by identity (access rules, rate-limit overrides).
    pub fn caller(&mut self, here: &Here, caller: &Sp<String>) {
        if !self.services.contains_key(&caller.value) {
            let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
            let msg =
                format!("`{}` is not a mesh identity{}", caller.value, crate::parse::suggest(&caller.value, &known));
            self.push(Code::UnknownIdentity, here, caller, msg);
        }
    }

    /// Reports `what` at `at` when `service` is carried as opaque TCP, where it cannot apply.
    pub fn http_only<T>(&mut self, here: &Here, service: &str, at: &Sp<T>, what: &str) {
        if self.tcp.contains(service) {
            let msg = format!("service `{service}` is `protocol: tcp`: {what} needs HTTP");
            self.push(Code::TcpService, here, at, msg);
        }
    }

    pub fn path(&mut self, here: &Here, path: &Sp<String>) {
        if !path.value.starts_with('/') {
            self.push(Code::InvalidPath, here, path, format!("path `{}` does not start with '/'", path.value));
        }
    }

    pub fn method(&mut self, here: &Here, method: &Sp<String>) {
        const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
        if !KNOWN.contains(&method.value.as_str()) {
            let msg =
                format!("`{}` is not an HTTP method{}", method.value, crate::parse::suggest(&method.value, &KNOWN));
            self.push(Code::InvalidMethod, here, method, msg);
        }
    }
}

#[cfg(test)]
mod tests;
