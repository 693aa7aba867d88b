//! Multi-document YAML files into resources, with every error located.

use crate::diagnostic::{Code, Diagnostic, Pos};
use crate::policy::{Located, Policy, Route, Service};
use serde::Deserialize;

/// One file of the policy tree, as read from a commit.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the repository root, with '/' separators.
    pub path: String,
    pub text: String,
}

/// The kinds this version of Trellis understands.
const KINDS: [&str; 2] = ["Service", "Route"];

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
    kind: Option<serde_saphyr::Spanned<serde_json::Value>>,
}

fn parse_document(file: &str, doc: &Document, policy: &mut Policy, errors: &mut Vec<Diagnostic>) {
    let shift = |p: Pos| Pos { line: if p.line == 0 { 0 } else { p.line + doc.first_line }, column: p.column };
    let header: Header = match serde_saphyr::from_str(&doc.text) {
        Ok(h) => h,
        Err(e) => {
            let (pos, message) = describe(&e);
            let code = if is_syntax_error(&e) { Code::YamlSyntax } else { Code::MissingKind };
            errors.push(Diagnostic::new(code, file, shift(pos), message));
            return;
        }
    };
    let Some(kind) = header.kind else {
        let pos = shift(Pos { line: 1, column: 1 });
        errors.push(Diagnostic::new(Code::MissingKind, file, pos, "document has no `kind`"));
        return;
    };
    let kind_pos = shift(crate::policy::pos(&kind));
    let Some(kind_name) = kind.value.as_str() else {
        errors.push(Diagnostic::new(Code::MissingKind, file, kind_pos, "`kind` must be a string"));
        return;
    };
    let result = match kind_name {
        "Service" => serde_saphyr::from_str::<Service>(&doc.text).map(|value| {
            policy.services.push(Located { file: file.to_string(), pos: kind_pos, line_offset: doc.first_line, value })
        }),
        "Route" => serde_saphyr::from_str::<Route>(&doc.text).map(|value| {
            policy.routes.push(Located { file: file.to_string(), pos: kind_pos, line_offset: doc.first_line, value })
        }),
        other => {
            let message = format!("unknown kind `{other}`{}", suggest(other, &KINDS));
            errors.push(Diagnostic::new(Code::UnknownKind, file, kind_pos, message));
            return;
        }
    };
    if let Err(e) = result {
        let (pos, message) = describe(&e);
        errors.push(Diagnostic::new(Code::Schema, file, shift(pos), format!("{kind_name}: {message}")));
    }
}

/// Syntax errors come from the YAML parser; the rest are the document's shape not fitting.
fn is_syntax_error(e: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    !matches!(
        e,
        E::Message { .. }
            | E::SerdeInvalidType { .. }
            | E::SerdeInvalidValue { .. }
            | E::SerdeInvalidLength { .. }
            | E::SerdeUnknownVariant { .. }
            | E::SerdeUnknownField { .. }
            | E::SerdeMissingField { .. }
    )
}

/// The position and a one-line message of a YAML error, without the source snippet (callers
/// render their own excerpt from the position).
fn describe(e: &serde_saphyr::Error) -> (Pos, String) {
    let pos = e.location().map(|l| Pos { line: l.line() as u32, column: l.column() as u32 }).unwrap_or_default();
    let text = e.without_snippet().to_string();
    let message = text.lines().next().unwrap_or("invalid document").trim().to_string();
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
