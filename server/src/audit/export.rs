//! Reading the audit log out: JSON Lines and CSV, and walking the hash chain. Shared by the
//! API and `trellis audit`.

use super::chain::{Broken, Verifier};
use crate::store::{Store, StoreError};
use trellis_api::AuditEntry;

pub const CSV_HEADER: &str = "id,at_ms,time,kind,actor,service,revision,summary,hash\n";

/// The events as JSON Lines or CSV rows (no header).
pub fn lines(items: &[AuditEntry], csv: bool) -> String {
    let mut out = String::new();
    for e in items {
        if csv {
            let fields = [
                e.id.to_string(),
                e.at.to_string(),
                trellis_api::format_time(e.at),
                e.kind.clone(),
                e.actor.clone(),
                e.service.clone().unwrap_or_default(),
                e.revision.clone().unwrap_or_default(),
                e.summary.clone(),
                e.hash.clone().unwrap_or_default(),
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        } else {
            out.push_str(&serde_json::to_string(e).unwrap_or_default());
        }
        out.push('\n');
    }
    out
}

/// RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled. A leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet never runs it as a formula.
fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@']) { format!("'{f}") } else { f.to_string() };
    if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f }
}

/// What a walk of the chain found.
pub struct Verification {
    pub verifier: Verifier,
    pub broken: Option<Broken>,
}

impl Verification {
    pub fn report(&self) -> Verified {
        Verified {
            intact: self.broken.is_none(),
            chained: self.verifier.chained,
            legacy: self.verifier.legacy,
            broken: self.broken.as_ref().map(|b| BrokenLink { id: b.id, why: b.why.clone() }),
        }
    }
}

/// `GET /api/v1/audit/verify`: whether every stored event links to the one before.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Verified {
    pub intact: bool,
    /// Events checked and found linked.
    pub chained: u64,
    /// Events written before the chain existed (an older Trellis), before the first link.
    pub legacy: u64,
    /// The first event whose link does not hold, and why.
    pub broken: Option<BrokenLink>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct BrokenLink {
    pub id: i64,
    pub why: String,
}

/// Walks every stored event in id order, stopping at the first broken link.
pub async fn verify(store: &Store) -> Result<Verification, StoreError> {
    let (mut verifier, mut after) = (Verifier::default(), 0i64);
    loop {
        let rows = store.chain_page(after, 5_000).await?;
        let Some(last) = rows.last() else { return Ok(Verification { verifier, broken: None }) };
        after = last.id;
        for row in &rows {
            if let Err(broken) = verifier.check(row) {
                return Ok(Verification { verifier, broken: Some(broken) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(super::csv_field("plain"), "plain");
        assert_eq!(super::csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(super::csv_field("=HYPERLINK(x)"), "'=HYPERLINK(x)");
    }
}
