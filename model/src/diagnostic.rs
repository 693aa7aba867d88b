//! Policy errors people can act on: a stable code, where, what, and a hint.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable error codes. The number never changes meaning once released; new problems get new
/// codes. `TR00xx` are syntax and schema problems, `TR01xx` semantic ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The file is not valid YAML.
    YamlSyntax,
    /// A document has no `kind`, or it is not a string.
    MissingKind,
    /// `kind` names no resource Trellis knows.
    UnknownKind,
    /// A document does not match its kind's schema (unknown field, wrong type, missing field).
    Schema,
    /// Two resources of one kind share a name.
    DuplicateName,
    /// A route names a service that no file defines.
    UnknownService,
    /// A backend names a version its service does not declare.
    UnknownVersion,
    /// A rule's backend weights do not add up to 100.
    WeightSum,
    /// A service declares no versions.
    NoVersions,
    /// A service declares the same version twice.
    DuplicateVersion,
    /// Two routes target the same service.
    DuplicateRoute,
    /// A name is not a DNS label.
    InvalidName,
    /// A rule has no backends.
    NoBackends,
    /// A path match is not an absolute path.
    InvalidPath,
}

impl Code {
    pub const ALL: [Code; 14] = [
        Code::YamlSyntax,
        Code::MissingKind,
        Code::UnknownKind,
        Code::Schema,
        Code::DuplicateName,
        Code::UnknownService,
        Code::UnknownVersion,
        Code::WeightSum,
        Code::NoVersions,
        Code::DuplicateVersion,
        Code::DuplicateRoute,
        Code::InvalidName,
        Code::NoBackends,
        Code::InvalidPath,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::YamlSyntax => "TR0001",
            Code::MissingKind => "TR0002",
            Code::UnknownKind => "TR0003",
            Code::Schema => "TR0004",
            Code::DuplicateName => "TR0101",
            Code::UnknownService => "TR0102",
            Code::UnknownVersion => "TR0103",
            Code::WeightSum => "TR0104",
            Code::NoVersions => "TR0105",
            Code::DuplicateVersion => "TR0106",
            Code::DuplicateRoute => "TR0107",
            Code::InvalidName => "TR0108",
            Code::NoBackends => "TR0109",
            Code::InvalidPath => "TR0110",
        }
    }

    /// What to do about it, in one sentence.
    pub fn hint(self) -> &'static str {
        match self {
            Code::YamlSyntax => "check indentation and quoting near the position shown",
            Code::MissingKind => "start every document with `kind:` (Service, Route)",
            Code::UnknownKind => "the known kinds are Service and Route",
            Code::Schema => "compare the document with the examples in policies/",
            Code::DuplicateName => "rename one of them; names are unique per kind across all files",
            Code::UnknownService => "define the service in a `kind: Service` document or fix the name",
            Code::UnknownVersion => "add the version to the service's `versions` or fix the name",
            Code::WeightSum => "weights are percentages: make them add up to exactly 100",
            Code::NoVersions => "list at least one version, e.g. `versions: [v1]`",
            Code::DuplicateVersion => "list each version once",
            Code::DuplicateRoute => "merge the rules into one Route per service",
            Code::InvalidName => "use lowercase letters, digits and '-', starting with a letter, at most 63 characters",
            Code::NoBackends => "give the rule at least one backend",
            Code::InvalidPath => "paths start with '/'",
        }
    }

    pub fn parse(code: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Code::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown code {s}")))
    }
}

/// A 1-based position in a file; line 0 means the position is unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// One problem in a policy, located in the commit's tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: Code,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub hint: String,
}

impl Diagnostic {
    pub fn new(code: Code, file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint: code.hint().to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error[TR0102]: message (hint: ...)`, the shape editors and CI parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error[{}]: {} (hint: {})",
            self.file, self.line, self.column, self.code, self.message, self.hint
        )
    }
}
