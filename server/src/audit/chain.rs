//! The hash chain that makes the audit log tamper-evident: each event's hash covers its
//! content and the previous event's hash, so changing, removing or reordering any stored event
//! breaks every link after it. Pure functions; the store and `trellis audit verify` use them.

use crate::audit::spool::Spooled;
pub use crate::store::ChainRow;
use crate::store::{Linked, NewEvent, Store, StoreError};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first chained event.
pub const GENESIS: &str = "";

/// What an event's hash covers, as stored (`detail` as its JSON text).
#[derive(Clone, Copy, Debug)]
pub struct Content<'a> {
    pub at: i64,
    pub kind: &'a str,
    pub actor: &'a str,
    pub revision: Option<&'a str>,
    pub service: Option<&'a str>,
    pub summary: &'a str,
    pub detail: &'a str,
}

/// SHA-256 (hex) over the previous event's hash and this event's content.
pub fn hash(prev: &str, c: &Content) -> String {
    // A JSON array is an unambiguous encoding of the fields: no separator can be forged.
    let canonical = serde_json::json!([prev, c.at, c.kind, c.actor, c.revision, c.service, c.summary, c.detail]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

pub fn hash_event(prev: &str, e: &NewEvent) -> String {
    let detail = e.detail.to_string();
    let c = Content {
        at: e.at,
        kind: &e.kind,
        actor: &e.actor,
        revision: e.revision.as_deref(),
        service: e.service.as_deref(),
        summary: &e.summary,
        detail: &detail,
    };
    hash(prev, &c)
}

/// Links `events` after the event whose hash is `prev`, each to the one before it.
pub fn link<'a>(events: &'a [Spooled], prev: &str) -> Vec<Linked<'a>> {
    link_refs(&events.iter().collect::<Vec<_>>(), prev)
}

fn link_refs<'a>(events: &[&'a Spooled], prev: &str) -> Vec<Linked<'a>> {
    let mut prev = prev.to_string();
    let mut linked = Vec::with_capacity(events.len());
    for e in events {
        let hash = hash_event(&prev, &e.event);
        linked.push(Linked {
            event: &e.event,
            uid: &e.uid,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    linked
}

/// Appends events in order after the chain's tail, in one transaction, each linked to the one
/// before; events whose uid is already stored (a spool replayed after a crash) are skipped.
/// Writers take turns, so replicas appending at once keep one chain.
pub async fn append(store: &Store, events: &[Spooled]) -> Result<(), StoreError> {
    let uids: Vec<&str> = events.iter().map(|e| e.uid.as_str()).collect();
    store
        .append_chained(&uids, |tail, stored| {
            let fresh: Vec<&Spooled> = events.iter().filter(|e| !stored.contains(&e.uid)).collect();
            link_refs(&fresh, tail)
        })
        .await
}

/// The first link that does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at event {id}: {why}")]
pub struct Broken {
    pub id: i64,
    pub why: String,
}

/// Walks the chain in id order, one row at a time (so millions of events stream through).
#[derive(Debug, Default)]
pub struct Verifier {
    prev: Option<String>,
    /// Events checked and found linked.
    pub chained: u64,
    /// Events written before the chain existed (an older Trellis), before the first link.
    pub legacy: u64,
}

impl ChainRow {
    fn content(&self) -> Content<'_> {
        Content {
            at: self.at,
            kind: &self.kind,
            actor: &self.actor,
            revision: self.revision.as_deref(),
            service: self.service.as_deref(),
            summary: &self.summary,
            detail: &self.detail,
        }
    }
}

impl Verifier {
    pub fn check(&mut self, row: &ChainRow) -> Result<(), Broken> {
        let broken = |why: String| Broken { id: row.id, why };
        let (Some(prev_hash), Some(stored)) = (&row.prev_hash, &row.hash) else {
            if self.prev.is_some() {
                return Err(broken("has no hash, after chained events: a row was inserted around the writer".into()));
            }
            self.legacy += 1;
            return Ok(());
        };
        let expected_prev = self.prev.as_deref().unwrap_or(GENESIS);
        if prev_hash != expected_prev {
            return Err(broken(format!(
                "it links to {} but the event before it hashes to {}: an event before it was removed, added or changed",
                short(prev_hash),
                short(expected_prev)
            )));
        }
        let actual = hash(prev_hash, &row.content());
        if &actual != stored {
            return Err(broken(format!(
                "its content hashes to {} but {} is stored: the event was changed",
                short(&actual),
                short(stored)
            )));
        }
        self.prev = Some(actual);
        self.chained += 1;
        Ok(())
    }
}

fn short(h: &str) -> String {
    if h.is_empty() { "(start)".into() } else { h.chars().take(12).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i64) -> Vec<ChainRow> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|id| {
                let detail = format!("{{\"i\":{id}}}");
                let summary = format!("event {id}");
                let content = Content {
                    at: id,
                    kind: "k",
                    actor: "ann",
                    revision: None,
                    service: Some("shop"),
                    summary: &summary,
                    detail: &detail,
                };
                let h = hash(&prev, &content);
                let row = ChainRow {
                    id,
                    at: id,
                    kind: "k".into(),
                    actor: "ann".into(),
                    revision: None,
                    service: Some("shop".into()),
                    summary: format!("event {id}"),
                    detail,
                    prev_hash: Some(prev.clone()),
                    hash: Some(h.clone()),
                };
                prev = h;
                row
            })
            .collect()
    }

    fn verify(rows: &[ChainRow]) -> Result<Verifier, Broken> {
        let mut v = Verifier::default();
        rows.iter().try_for_each(|r| v.check(r)).map(|()| v)
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&rows(5)).unwrap().chained, 5);
    }

    #[test]
    fn a_changed_event_is_found() {
        let mut r = rows(5);
        r[2].actor = "mallory".into();
        let broken = verify(&r).unwrap_err();
        assert_eq!(broken.id, 3);
        assert!(broken.why.contains("the event was changed"), "{broken}");
    }

    #[test]
    fn a_removed_or_reordered_event_is_found() {
        let mut r = rows(5);
        r.remove(1);
        assert_eq!(verify(&r).unwrap_err().id, 3, "the event after the gap no longer links");
        let mut r = rows(5);
        r.swap(1, 2);
        assert_eq!(verify(&r).unwrap_err().id, 3);
    }

    #[test]
    fn legacy_events_may_only_come_first() {
        let mut r = rows(3);
        let mut legacy = r[0].clone();
        (legacy.prev_hash, legacy.hash, legacy.id) = (None, None, 0);
        r.insert(0, legacy.clone());
        let v = verify(&r).unwrap();
        assert_eq!((v.legacy, v.chained), (1, 3));
        legacy.id = 9;
        r.push(legacy);
        assert_eq!(verify(&r).unwrap_err().id, 9);
    }
}
