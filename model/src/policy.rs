//! The resource kinds as users write them in the policy repository.
//!
//! Fields that validation points at are `Spanned`, so an error names the exact line and column.
//! Unknown fields are refused: a typo must never silently mean "use the default".

use crate::diagnostic::Pos;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Every resource of one commit, with the file each came from.
#[derive(Debug, Default)]
pub struct Policy {
    pub services: Vec<Located<Service>>,
    pub routes: Vec<Located<Route>>,
}

/// A resource and where it was written.
#[derive(Debug)]
pub struct Located<T> {
    pub file: String,
    /// Position of the document's `kind:` key.
    pub pos: Pos,
    /// Lines before the document in its file: spans inside `value` count from the document.
    pub line_offset: u32,
    pub value: T,
}

impl<T> Located<T> {
    /// The position in the file of a value inside this resource.
    pub fn at<S>(&self, s: &Spanned<S>) -> Pos {
        let p = pos(s);
        Pos { line: if p.line == 0 { 0 } else { p.line + self.line_offset }, ..p }
    }
}

/// A service in the mesh and the versions (subsets) it runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    #[allow(dead_code)]
    kind: String,
    pub name: Spanned<String>,
    /// The port the application listens on behind its sidecar.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
    pub versions: Vec<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Http2,
    Grpc,
}

/// How requests to one service are matched and split across its versions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    #[allow(dead_code)]
    kind: String,
    pub name: Spanned<String>,
    /// The service whose traffic this route shapes.
    pub service: Spanned<String>,
    pub rules: Vec<Spanned<Rule>>,
}

/// One rule: if any match applies (or there are none), split across the backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub matches: Vec<Match>,
    pub backends: Vec<Spanned<WeightedVersion>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// HTTP method, e.g. GET; matches any when absent.
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum PathMatch {
    Exact(Spanned<String>),
    Prefix(Spanned<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightedVersion {
    pub version: Spanned<String>,
    /// Percentage of matching requests; the weights of a rule add up to 100.
    pub weight: u32,
}

/// The position a `Spanned` value was written at, relative to its document.
pub fn pos<T>(s: &Spanned<T>) -> Pos {
    Pos { line: s.referenced.line() as u32, column: s.referenced.column() as u32 }
}
