//! Rules that span resources and files. Every violation is reported, not just the first.

use crate::diagnostic::{Code, Diagnostic, Pos};
use crate::policy::{Located, PathMatch, Policy, Route};
use std::collections::{BTreeMap, BTreeSet};

pub fn validate(policy: &Policy) -> Result<(), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut services: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut seen: BTreeMap<(&str, &str), (&str, Pos)> = BTreeMap::new();

    for svc in &policy.services {
        let s = &svc.value;
        let file = svc.file.as_str();
        check_name(&s.name.value, file, svc.at(&s.name), &mut errors);
        check_unique(("Service", &s.name.value), file, svc.at(&s.name), &mut seen, &mut errors);
        if s.versions.is_empty() {
            errors.push(Diagnostic::new(
                Code::NoVersions,
                file,
                svc.at(&s.name),
                format!("service `{}` declares no versions", s.name.value),
            ));
        }
        let mut versions = BTreeSet::new();
        for v in &s.versions {
            check_name(&v.value, file, svc.at(v), &mut errors);
            if !versions.insert(v.value.as_str()) {
                errors.push(Diagnostic::new(
                    Code::DuplicateVersion,
                    file,
                    svc.at(v),
                    format!("service `{}` lists version `{}` twice", s.name.value, v.value),
                ));
            }
        }
        services.insert(s.name.value.as_str(), versions);
    }

    let mut routed: BTreeMap<&str, &str> = BTreeMap::new();
    for route in &policy.routes {
        let r = &route.value;
        let file = route.file.as_str();
        check_name(&r.name.value, file, route.at(&r.name), &mut errors);
        check_unique(("Route", &r.name.value), file, route.at(&r.name), &mut seen, &mut errors);
        let Some(versions) = services.get(r.service.value.as_str()) else {
            let known: Vec<&str> = services.keys().copied().collect();
            errors.push(Diagnostic::new(
                Code::UnknownService,
                file,
                route.at(&r.service),
                format!(
                    "route `{}` targets unknown service `{}`{}",
                    r.name.value,
                    r.service.value,
                    crate::parse::suggest(&r.service.value, &known)
                ),
            ));
            continue;
        };
        if let Some(other) = routed.insert(r.service.value.as_str(), r.name.value.as_str()) {
            errors.push(Diagnostic::new(
                Code::DuplicateRoute,
                file,
                route.at(&r.service),
                format!("service `{}` is already routed by `{other}`", r.service.value),
            ));
        }
        for rule in &r.rules {
            check_rule(route, versions, &rule.value, route.at(rule), &mut errors);
        }
    }

    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn check_rule(
    route: &Located<Route>,
    versions: &BTreeSet<&str>,
    rule: &crate::policy::Rule,
    rule_pos: Pos,
    errors: &mut Vec<Diagnostic>,
) {
    let service = route.value.service.value.as_str();
    let file = route.file.as_str();
    if rule.backends.is_empty() {
        errors.push(Diagnostic::new(Code::NoBackends, file, rule_pos, "rule has no backends"));
        return;
    }
    for m in &rule.matches {
        if let Some(PathMatch::Exact(p) | PathMatch::Prefix(p)) = &m.path
            && !p.value.starts_with('/')
        {
            let msg = format!("path `{}` does not start with '/'", p.value);
            errors.push(Diagnostic::new(Code::InvalidPath, file, route.at(p), msg));
        }
    }
    let mut sum = 0u64;
    for b in &rule.backends {
        sum += u64::from(b.value.weight);
        let v = &b.value.version;
        if !versions.contains(v.value.as_str()) {
            let known: Vec<&str> = versions.iter().copied().collect();
            errors.push(Diagnostic::new(
                Code::UnknownVersion,
                file,
                route.at(v),
                format!(
                    "service `{service}` has no version `{}` (it has {}){}",
                    v.value,
                    known.join(", "),
                    crate::parse::suggest(&v.value, &known)
                ),
            ));
        }
    }
    if sum != 100 {
        errors.push(Diagnostic::new(
            Code::WeightSum,
            file,
            route.at(&rule.backends[0]),
            format!("backend weights add up to {sum}, not 100"),
        ));
    }
}

fn check_unique<'a>(
    key: (&'a str, &'a str),
    file: &'a str,
    at: Pos,
    seen: &mut BTreeMap<(&'a str, &'a str), (&'a str, Pos)>,
    errors: &mut Vec<Diagnostic>,
) {
    if let Some((first_file, first)) = seen.insert(key, (file, at)) {
        errors.push(Diagnostic::new(
            Code::DuplicateName,
            file,
            at,
            format!("{} `{}` is already defined at {first_file}:{}:{}", key.0, key.1, first.line, first.column),
        ));
    }
}

/// Names end up in hostnames, metric labels and identities, so they are DNS labels.
fn check_name(name: &str, file: &str, at: Pos, errors: &mut Vec<Diagnostic>) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        errors.push(Diagnostic::new(Code::InvalidName, file, at, format!("`{name}` is not a valid name")));
    }
}
