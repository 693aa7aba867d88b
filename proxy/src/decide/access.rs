//! Who may call this proxy's service: the pure decision the inbound side makes for each
//! request from the mesh mode, the service's access policy and the caller's verified identity.

use crate::decide::split::prefix_matches;
use trellis_model::config::{AccessConfig, AccessMode, MeshSettings, MtlsMode};

/// Who is calling, as the connection proved it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A client certificate from this mesh's CA naming this service.
    Verified(&'a str),
    /// mTLS from a certificate that names no service of this trust domain.
    Unknown,
    Plaintext,
}

impl Caller<'_> {
    fn service(&self) -> Option<&str> {
        match self {
            Caller::Verified(s) => Some(s),
            _ => None,
        }
    }

    /// The label metrics and the topology use.
    pub fn label(&self) -> &str {
        match self {
            Caller::Verified(s) => s,
            Caller::Unknown => "unknown",
            Caller::Plaintext => "plaintext",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// `by` names what denied it (`AccessPolicy/<name>`, `Mesh/mtls=strict`, ...).
    Deny {
        by: String,
        why: String,
    },
}

/// Decides one request. `enforcing` is false for a proxy with no identity of its own (no join
/// token): it cannot tell callers apart, so only a blanket `deny` applies.
pub fn decide(
    mesh: &MeshSettings,
    access: &AccessConfig,
    enforcing: bool,
    caller: &Caller<'_>,
    method: &str,
    path: &str,
) -> Decision {
    let deny = |by: String, why: String| Decision::Deny { by, why };
    if access.rules.is_empty() && access.mode == AccessMode::Deny {
        return deny("Mesh/defaultAccess=deny".into(), "this service accepts no callers".into());
    }
    if !enforcing || mesh.mtls == MtlsMode::Disabled {
        return Decision::Allow;
    }
    if *caller == Caller::Plaintext && mesh.mtls == MtlsMode::Strict {
        return deny("Mesh/mtls=strict".into(), "plaintext is refused: callers must use mTLS".into());
    }
    if access.rules.is_empty() {
        return match (access.mode, caller.service()) {
            (AccessMode::AllowAll, _) | (AccessMode::Authenticated, Some(_)) => Decision::Allow,
            _ => deny(
                "Mesh/defaultAccess=authenticated".into(),
                format!("a {} caller is not an authenticated mesh identity", caller.label()),
            ),
        };
    }
    let allowed = caller.service().is_some_and(|svc| {
        access.rules.iter().any(|r| {
            r.from.iter().any(|f| f == svc)
                && (r.paths.is_empty() || r.paths.iter().any(|p| prefix_matches(p, path)))
                && (r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
        })
    });
    if allowed {
        return Decision::Allow;
    }
    let by = access.policies.iter().map(|p| format!("AccessPolicy/{p}")).collect::<Vec<_>>().join(",");
    deny(by, format!("no rule allows {} to {method} {path}", caller.label()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_model::config::AccessRuleConfig;

    fn mesh(mtls: MtlsMode) -> MeshSettings {
        MeshSettings { mtls, default_access: AccessMode::Authenticated }
    }

    fn rules() -> AccessConfig {
        AccessConfig {
            mode: AccessMode::Authenticated,
            rules: vec![
                AccessRuleConfig { from: vec!["storefront".into()], paths: vec![], methods: vec![] },
                AccessRuleConfig {
                    from: vec!["audit".into()],
                    paths: vec!["/reports".into()],
                    methods: vec!["GET".into()],
                },
            ],
            policies: vec!["inventory-callers".into()],
        }
    }

    fn verified(s: &str) -> Caller<'_> {
        Caller::Verified(s)
    }

    #[test]
    fn rules_allow_named_callers_narrowed_by_path_and_method() {
        let (m, a) = (mesh(MtlsMode::Strict), rules());
        assert_eq!(decide(&m, &a, true, &verified("storefront"), "POST", "/x"), Decision::Allow);
        assert_eq!(decide(&m, &a, true, &verified("audit"), "get", "/reports/q1"), Decision::Allow);
        for (method, path) in [("POST", "/reports"), ("GET", "/reportsx"), ("GET", "/items")] {
            let Decision::Deny { by, .. } = decide(&m, &a, true, &verified("audit"), method, path) else {
                panic!("{method} {path} allowed")
            };
            assert_eq!(by, "AccessPolicy/inventory-callers");
        }
        assert!(matches!(decide(&m, &a, true, &verified("catalog"), "GET", "/"), Decision::Deny { .. }));
        assert!(matches!(decide(&m, &a, true, &Caller::Unknown, "GET", "/"), Decision::Deny { .. }));
    }

    #[test]
    fn strict_refuses_plaintext_and_permissive_lets_it_meet_the_policy() {
        let open = AccessConfig { mode: AccessMode::AllowAll, ..Default::default() };
        let Decision::Deny { by, .. } = decide(&mesh(MtlsMode::Strict), &open, true, &Caller::Plaintext, "GET", "/")
        else {
            panic!("plaintext allowed in strict mode")
        };
        assert_eq!(by, "Mesh/mtls=strict");
        let permissive = mesh(MtlsMode::Permissive);
        assert_eq!(decide(&permissive, &open, true, &Caller::Plaintext, "GET", "/"), Decision::Allow);
        // Authenticated (the default) needs an identity that plaintext cannot show.
        let Decision::Deny { by, .. } =
            decide(&permissive, &AccessConfig::default(), true, &Caller::Plaintext, "GET", "/")
        else {
            panic!("plaintext passed as authenticated")
        };
        assert_eq!(by, "Mesh/defaultAccess=authenticated");
        assert_eq!(decide(&permissive, &AccessConfig::default(), true, &verified("a"), "GET", "/"), Decision::Allow);
        assert!(matches!(decide(&permissive, &rules(), true, &Caller::Plaintext, "GET", "/"), Decision::Deny { .. }));
    }

    #[test]
    fn without_identities_only_a_blanket_deny_applies() {
        let m = mesh(MtlsMode::Strict);
        assert_eq!(decide(&m, &rules(), false, &Caller::Plaintext, "GET", "/"), Decision::Allow);
        assert_eq!(decide(&mesh(MtlsMode::Disabled), &rules(), true, &Caller::Plaintext, "GET", "/"), Decision::Allow);
        let closed = AccessConfig { mode: AccessMode::Deny, ..Default::default() };
        assert!(matches!(decide(&m, &closed, false, &verified("a"), "GET", "/"), Decision::Deny { .. }));
    }
}
