//! Multi-document YAML files into resources, with every error located.

use crate::diagnostic::{Code, Diagnostic, Pos};
use crate::policy::{Located, Policy};
use serde::Deserialize;

/// One file of the policy tree, as read from a commit.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the repository root, with '/' separators.
    pub path: String,
    pub text: String,
}

/// Policy files larger than this are refused: they are configuration, not data.
pub const MAX_FILE_BYTES: usize = 1 << 20;

impl SourceFile {
    /// A file's bytes as read from a commit or a directory, refusing what cannot be policy.
    pub fn from_bytes(path: &str, bytes: &[u8]) -> Result<SourceFile, Diagnostic> {
        let unreadable = |why: &str| Diagnostic::new(Code::Unreadable, path, Pos { line: 1, column: 1 }, why);
        if bytes.len() > MAX_FILE_BYTES {
            return Err(unreadable("file is larger than 1 MiB"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| unreadable("file is not UTF-8 text"))?;
        Ok(SourceFile { path: path.to_string(), text: text.to_string() })
    }

    /// Whether a path names a policy file: YAML outside dot-directories.
    pub fn is_policy_path(path: &str) -> bool {
        (path.ends_with(".yaml") || path.ends_with(".yml")) && !path.split('/').any(|part| part.starts_with('.'))
    }
}

/// The kinds this version of Trellis understands.
pub const KINDS: [&str; 7] = ["Mesh", "Service", "Route", "TrafficPolicy", "AccessPolicy", "Rollout", "Notification"];

/// Parses every document of every file. All problems are collected, never just the first.
pub fn parse(files: &[SourceFile]) -> Result<Policy, Vec<Diagnostic>> {
    let mut policy = Policy::default();
    let mut errors = Vec::new();
    for file in files {
        for doc in split_documents(&file.text) {
            parse_document(&file.path, &doc, &mut policy, &mut errors);
        }
    }
    if errors.is_empty() { Ok(policy) } else { Err(errors) }
}

/// A document's text and the 0-based line it starts on in its file.
struct Document {
    text: String,
    first_line: u32,
}

/// Splits a YAML stream at `---` document markers. Parsing each document on its own lets us
/// read `kind` first and then the body with its own strict schema, while keeping positions
/// relative to the file.
fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 0u32;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line == "...";
        if is_marker {
            docs.push(Document { text: std::mem::take(&mut current), first_line });
            // Keep the position of the marker line so that columns on it stay right.
            first_line = i as u32 + 1;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push(Document { text: current, first_line });
    docs.retain(|d| !is_blank(&d.text));
    docs
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

#[derive(Deserialize)]
struct Header {
    kind: Option<crate::spanned::Sp<serde_json::Value>>,
}

fn parse_document(file: &str, doc: &Document, policy: &mut Policy, errors: &mut Vec<Diagnostic>) {
    let shift = |p: Pos| Pos { line: if p.line == 0 { 0 } else { p.line + doc.first_line }, column: p.column };
    let header: Header = match serde_saphyr::from_str(&doc.text) {
        Ok(h) => h,
        Err(e) => {
            let (pos, message) = describe(&e);
            let code = match classify(&e) {
                Code::YamlSyntax | Code::DuplicateKey => classify(&e),
                _ => Code::MissingKind,
            };
            let message = if code == Code::MissingKind {
                format!("a document must be a mapping with a `kind`: {message}")
            } else {
                message
            };
            errors.push(Diagnostic::new(code, file, shift(pos), message));
            return;
        }
    };
    let Some(kind) = header.kind else {
        let pos = shift(Pos { line: 1, column: 1 });
        errors.push(Diagnostic::new(Code::MissingKind, file, pos, "document has no `kind`"));
        return;
    };
    let kind_pos = shift(kind.pos);
    let Some(kind_name) = kind.value.as_str() else {
        errors.push(Diagnostic::new(Code::MissingKind, file, kind_pos, "`kind` must be a string"));
        return;
    };
    fn at<T>(file: &str, pos: Pos, line_offset: u32, value: T) -> Located<T> {
        Located { file: file.to_string(), pos, line_offset, value }
    }
    let (text, offset) = (doc.text.as_str(), doc.first_line);
    let result = match kind_name {
        "Mesh" => serde_saphyr::from_str(text).map(|v| policy.meshes.push(at(file, kind_pos, offset, v))),
        "Service" => serde_saphyr::from_str(text).map(|v| policy.services.push(at(file, kind_pos, offset, v))),
        "Route" => serde_saphyr::from_str(text).map(|v| policy.routes.push(at(file, kind_pos, offset, v))),
        "TrafficPolicy" => {
            serde_saphyr::from_str(text).map(|v| policy.traffic_policies.push(at(file, kind_pos, offset, v)))
        }
        "AccessPolicy" => {
            serde_saphyr::from_str(text).map(|v| policy.access_policies.push(at(file, kind_pos, offset, v)))
        }
        "Rollout" => serde_saphyr::from_str(text).map(|v| policy.rollouts.push(at(file, kind_pos, offset, v))),
        "Notification" => {
            serde_saphyr::from_str(text).map(|v| policy.notifications.push(at(file, kind_pos, offset, v)))
        }
        other => {
            let message = format!("unknown kind `{other}`{}", suggest(other, &KINDS));
            errors.push(Diagnostic::new(Code::UnknownKind, file, kind_pos, message));
            return;
        }
    };
    if let Err(e) = result {
        let (pos, message) = describe(&e);
        errors.push(Diagnostic::new(classify(&e), file, shift(pos), format!("{kind_name}: {message}")));
    }
}

/// Which code a YAML error deserves: the parser's own errors are syntax, serde's are schema.
fn classify(e: &serde_saphyr::Error) -> Code {
    use serde_saphyr::Error as E;
    match e.without_snippet() {
        E::SerdeUnknownField { .. } => Code::UnknownField,
        E::SerdeMissingField { .. } => Code::MissingField,
        E::DuplicateMappingKey { .. } => Code::DuplicateKey,
        E::Message { .. }
        | E::SerdeInvalidType { .. }
        | E::SerdeInvalidValue { .. }
        | E::SerdeInvalidLength { .. }
        | E::SerdeUnknownVariant { .. }
        | E::InvalidScalar { .. }
        | E::InvalidBooleanStrict { .. }
        | E::NullIntoString { .. }
        | E::UnexpectedValueForUnit { .. }
        | E::ExpectedStringKeyForExternallyTaggedEnum { .. }
        | E::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | E::UnexpectedValueForUnitEnumVariant { .. } => Code::InvalidValue,
        _ => Code::YamlSyntax,
    }
}

/// The position and a one-line message of a YAML error, without the source snippet (callers
/// render their own excerpt from the position).
fn describe(e: &serde_saphyr::Error) -> (Pos, String) {
    let pos = e.location().map(|l| Pos { line: l.line() as u32, column: l.column() as u32 }).unwrap_or_default();
    let message = match e.without_snippet() {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => {
            format!("unknown field `{field}`{} (fields: {})", suggest(field, expected), expected.join(", "))
        }
        serde_saphyr::Error::SerdeUnknownVariant { variant, expected, .. } => {
            format!("unknown value `{variant}`{} (one of: {})", suggest(variant, expected), expected.join(", "))
        }
        inner => {
            let text = inner.to_string();
            let line = text.lines().next().unwrap_or("invalid document").trim();
            // The position is reported separately, in file coordinates.
            line.rsplit_once(" at line ").map_or(line, |(msg, _)| msg).to_string()
        }
    };
    (pos, message)
}

/// ", did you mean `X`?" when a known word is within two edits of the given one.
pub fn suggest(given: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(&given.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(", did you mean `{k}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
