//! Policy errors people can act on: a stable code, where, what, and a hint.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $summary:literal, $hint:literal;)*) => {
        /// Stable error codes. A number never changes meaning once released; new problems get
        /// new codes. `TR00xx`: the file and its schema. `TR01xx`: meaning across resources.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $($(#[$doc])* $variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }

            /// What the code means, for the catalogue.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary),* }
            }

            /// What to do about it, in one sentence.
            pub fn hint(self) -> &'static str {
                match self { $(Code::$variant => $hint),* }
            }
        }
    };
}

codes! {
    YamlSyntax = "TR0001", "the file is not valid YAML",
        "check indentation and quoting near the position shown";
    MissingKind = "TR0002", "a document has no `kind`, or it is not a string",
        "start every document with `kind:` (Mesh, Service, Route, TrafficPolicy, AccessPolicy, Rollout)";
    UnknownKind = "TR0003", "`kind` names no resource Trellis knows",
        "the kinds are Mesh, Service, Route, TrafficPolicy, AccessPolicy and Rollout";
    UnknownField = "TR0004", "a field the kind does not have",
        "remove the field or fix its spelling; unknown fields are refused so a typo never means a default";
    InvalidValue = "TR0005", "a value of the wrong type or not among the allowed ones",
        "compare the value with the examples in policies/ or the schema from `trellis schema`";
    DuplicateKey = "TR0006", "a key appears twice in one mapping",
        "keep one of them; YAML would silently keep only the last";
    MissingField = "TR0007", "a required field is missing",
        "add the field; `trellis schema` lists what each kind requires";
    InvalidDuration = "TR0008", "not a duration",
        "write durations with a unit: 250ms, 10s, 1m30s, 2h";
    Unreadable = "TR0009", "a policy file that cannot be read as text",
        "policy files are UTF-8 text under 1 MiB";
    UnsignedCommit = "TR0010", "a commit without a valid signature by an allowed key, where signatures are required",
        "sign commits with an SSH key listed in TRELLIS_ALLOWED_SIGNERS (git config gpg.format ssh; git commit -S)";
    DuplicateName = "TR0101", "two resources of one kind share a name",
        "rename one of them; names are unique per kind across all files";
    UnknownService = "TR0102", "a reference to a service no file defines",
        "define the service in a `kind: Service` document or fix the name";
    UnknownVersion = "TR0103", "a reference to a version its service does not declare",
        "add the version to the service's `versions` or fix the name";
    WeightSum = "TR0104", "a rule's backend weights do not add up to 100",
        "weights are percentages: make them add up to exactly 100";
    NoVersions = "TR0105", "a service declares no versions",
        "list at least one version, e.g. `versions: [v1]`";
    DuplicateVersion = "TR0106", "a version listed twice",
        "list each version once";
    DuplicateTarget = "TR0107", "two Routes, or two TrafficPolicies, for one service",
        "merge them into one resource per service";
    InvalidName = "TR0108", "a name that is not a DNS label",
        "use lowercase letters, digits and '-', starting with a letter, at most 63 characters";
    NoBackends = "TR0109", "a rule without backends",
        "give the rule at least one backend";
    InvalidPath = "TR0110", "a path that does not start with '/'",
        "paths are absolute: start them with '/'";
    ShadowedRule = "TR0111", "a rule that can never match because an earlier rule catches all its requests",
        "move the narrower rule above the broader one, or remove it";
    OutOfRange = "TR0112", "a number outside its allowed range",
        "use a value within the range given in the message";
    DuplicateRollout = "TR0113", "two Rollouts for one service",
        "finish or remove one rollout before starting another";
    UnknownIdentity = "TR0114", "an access rule or rate-limit override names a caller that is not a mesh service",
        "callers are named by service; define the service or fix the name";
    InvalidRegex = "TR0115", "a regular expression that does not compile",
        "check the pattern's syntax (RE2-like, no look-around)";
    InvalidRollout = "TR0116", "a Rollout whose steps or strategy cannot work",
        "use distinct stable and canary versions, increasing step weights, and a header for header strategies";
    TimeoutOrder = "TR0117", "a per-try timeout longer than the request timeout",
        "make `perTry` shorter than `request`, or the retries could never happen";
    MultipleMeshes = "TR0118", "more than one Mesh resource",
        "keep one `kind: Mesh` document for the whole repository";
    InvalidHeader = "TR0119", "a header condition that cannot match",
        "header names are tokens; give `value` or `regex`, not both";
    InvalidMethod = "TR0120", "not an HTTP method",
        "use an uppercase method such as GET, POST, PUT, DELETE";
    GrpcCondition = "TR0121", "a gRPC retry condition on a service that does not speak gRPC",
        "give the service `protocol: grpc`, or retry on HTTP conditions (5xx, gateway-error, connect-failure, reset)";
    TcpService = "TR0123", "an HTTP feature on a `protocol: tcp` service",
        "a tcp service is routed per connection: give its rules only backends, and leave out paths, methods, retries, timeouts, faults, mirrors, rate limits and rollouts";
    RateLimit = "TR0122", "a rate limit that limits nothing, or gives one caller two overrides",
        "set `total`, `perCaller` or `overrides`, and name each caller in one override only";
    NotificationEvent = "TR0124", "a notification event Trellis does not have",
        "use rollout-started, rollout-stepped, rollout-paused, rollout-aborted, rollout-completed, revision-rejected, proxy-nack or certificate-expiring";
    NotificationTarget = "TR0125", "a notification without exactly one target, or a webhook without exactly one URL",
        "give it `webhook:` (with `url` or `urlFrom`, and `secretFrom`) or `slack:` (with `urlFrom`)";
    SecretReference = "TR0126", "a secret named by an environment variable that is not valid or not set",
        "name an environment variable (A-Z, 0-9, _) that is set for the control plane, e.g. `secretFrom: TRELLIS_HOOK_SECRET`";
}

impl Code {
    pub fn parse(code: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == code)
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

/// A code is its `TR` string, one of [`Code::ALL`].
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Code {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Code".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        schemars::json_schema!({ "type": "string", "enum": codes, "description": "A stable policy error code." })
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Diagnostic {
    pub code: Code,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub hint: String,
    /// The line the error points into, so it can be shown without the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
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
            source: None,
        }
    }

    /// The rustc-like block: message, location, source line with a caret, hint.
    pub fn render(&self) -> String {
        let mut out = format!("error[{}]: {}\n", self.code, self.message);
        let gutter = " ".repeat(self.line.to_string().len());
        out.push_str(&format!("{gutter}--> {}:{}:{}\n", self.file, self.line, self.column));
        if let Some(src) = &self.source {
            let col = (self.column as usize).max(1);
            let width = caret_width(src, col);
            out.push_str(&format!("{gutter} |\n{} | {src}\n", self.line));
            out.push_str(&format!("{gutter} | {}{}\n", " ".repeat(col - 1), "^".repeat(width)));
        }
        out.push_str(&format!("{gutter} = hint: {}\n", self.hint));
        out
    }

    /// A GitHub Actions workflow command: shows the error on the pull request's diff.
    pub fn github_annotation(&self) -> String {
        let escape = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
        let prop = |s: &str| escape(s).replace(':', "%3A").replace(',', "%2C");
        format!(
            "::error file={},line={},col={},title={}::{}%0Ahint: {}",
            prop(&self.file),
            self.line,
            self.column,
            self.code,
            escape(&self.message),
            escape(&self.hint)
        )
    }
}

/// The length of the word the caret points at (at least 1).
fn caret_width(line: &str, col: usize) -> usize {
    let rest: String = line.chars().skip(col - 1).collect();
    let word = rest.chars().take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')).count();
    word.max(1)
}

/// Attaches each diagnostic's source line from the files it points into.
pub fn attach_sources(diagnostics: &mut [Diagnostic], files: &[crate::SourceFile]) {
    for d in diagnostics {
        let file = files.iter().find(|f| f.path == d.file);
        d.source = file.and_then(|f| f.text.lines().nth((d.line as usize).checked_sub(1)?)).map(str::to_string);
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
