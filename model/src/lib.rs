//! The Trellis policy language.
//!
//! Pure: no I/O, no async, builds for wasm32. The control plane, the CLI and the dashboard all
//! call the same functions, so a policy is judged the same way on a laptop, in a pull request's
//! CI and in the control plane.
//!
//! The pipeline is `parse` (YAML with source positions) → `validate` (semantic rules) →
//! `compile` (the configuration proxies run). [`load`] runs all three.
//!
//! # Layout
//! - [`diagnostic`]: errors with a stable code, file, line, column and hint.
//! - [`policy`]: the resource kinds as users write them.
//! - [`parse`]: multi-document YAML files into resources.
//! - [`validate`]: rules across resources and files.
//! - [`config`]: the compiled configuration proxies run.
//! - [`fleet`]: the fleet protocol between proxies and the control plane: paths and messages.
//! - [`defaults`]: every default, in one place.
//! - [`duration`], [`spanned`]: value types of the language.
//! - [`telemetry`]: the reports proxies push, and their checks.
//! - [`exposition`]: the Prometheus text format both binaries write.
//! - [`compile`]: policy into configuration.
//! - [`diff`]: what a change does to traffic, in plain words.
//! - [`rollout`]: the canary state machine and its traffic overlay.

#![forbid(unsafe_code)]

pub mod compile;
pub mod config;
pub mod defaults;
pub mod diagnostic;
pub mod diff;
pub mod duration;
pub mod exposition;
pub mod fleet;
pub mod parse;
pub mod policy;
pub mod rollout;
pub mod spanned;
pub mod telemetry;
pub mod validate;

pub use compile::compile;
pub use config::{Backend, Endpoint, MeshConfig, ProxyConfig, RuleConfig, ServiceConfig};
pub use diagnostic::{Code, Diagnostic};
pub use parse::{SourceFile, parse};
pub use policy::Policy;
pub use validate::validate;

/// Parses, validates and compiles a set of policy files for `revision`.
///
/// Every problem in every file is reported at once, so a pull request sees all of them.
pub fn load(files: &[SourceFile], revision: &str) -> Result<MeshConfig, Vec<Diagnostic>> {
    load_in(files, revision, &|_| true)
}

/// [`load`] on the control plane that will use the policy: each secret it names must also be
/// set there (`is_set` looks in its environment).
pub fn load_in(
    files: &[SourceFile],
    revision: &str,
    is_set: &dyn Fn(&str) -> bool,
) -> Result<MeshConfig, Vec<Diagnostic>> {
    let judged = parse(files).and_then(|policy| {
        validate(&policy)?;
        let unset = validate::secrets(&policy, is_set);
        if unset.is_empty() { Ok(policy) } else { Err(unset) }
    });
    match judged {
        Ok(policy) => Ok(compile(&policy, revision)),
        Err(mut errors) => {
            diagnostic::attach_sources(&mut errors, files);
            Err(errors)
        }
    }
}
