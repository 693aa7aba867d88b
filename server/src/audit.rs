//! The audit trail: every change and who made it. Producers never wait for the database: they
//! hand events to a bounded queue drained by one writer, which keeps them in order.

use crate::store::{NewEvent, Store};
use serde_json::json;
use tokio::sync::mpsc;
use trellis_web::api::RevisionView;
pub use trellis_web::api::short_sha as short;

/// Events waiting for the database; beyond this, producers log and drop rather than grow
/// without bound (a durable spool replaces this with the audit work).
const QUEUE: usize = 4096;

/// About a minute and a half of retries before an event is given up (and logged in full).
const MAX_ATTEMPTS: u32 = 25;

/// The actor for changes the control plane makes on its own.
pub const SYSTEM: &str = "trellis";

#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<NewEvent>,
}

impl Audit {
    pub fn start(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<NewEvent>(QUEUE);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                // Retry before moving on: order matters more than latency here.
                let mut delay = std::time::Duration::from_millis(100);
                for attempt in 1.. {
                    match store.append(&event).await {
                        Ok(_) => break,
                        Err(e) if attempt >= MAX_ATTEMPTS => {
                            tracing::error!(error = %e, event = ?event, "audit event lost after retries");
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, kind = %event.kind, "audit write failed; retrying"),
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        });
        Audit { tx }
    }

    pub fn record(&self, event: NewEvent) {
        if let Err(e) = self.tx.try_send(event) {
            tracing::error!(error = %e, "audit queue full; event dropped");
        }
    }

    /// A revision was judged: applied or rejected with its errors. The author of the commit
    /// is the actor: they made the change.
    pub fn revision(&self, rev: &RevisionView) {
        let first_line = rev.message.lines().next().unwrap_or_default();
        let summary = match rev.outcome.as_str() {
            "applied" => match rev.changes.as_slice() {
                [] => format!("applied {} \"{first_line}\": no change to traffic", short(&rev.sha)),
                [one] => format!("applied {} \"{first_line}\": {}", short(&rev.sha), one.text),
                [first, rest @ ..] => {
                    format!("applied {} \"{first_line}\": {} (+{} more)", short(&rev.sha), first.text, rest.len())
                }
            },
            _ => format!(
                "rejected {} \"{first_line}\": {} error(s), first: {}",
                short(&rev.sha),
                rev.errors.len(),
                rev.errors.first().map(|e| e.to_string()).unwrap_or_default()
            ),
        };
        self.record(NewEvent {
            at: crate::now_ms(),
            kind: format!("revision.{}", rev.outcome),
            actor: rev.author.clone(),
            revision: Some(rev.sha.clone()),
            service: None,
            summary,
            detail: json!({
                "message": rev.message,
                "committed_at": rev.committed_at,
                "errors": rev.errors,
                "changes": rev.changes,
            }),
        });
    }

    pub fn system(&self, kind: &str, service: Option<&str>, summary: String, detail: serde_json::Value) {
        self.record(NewEvent {
            at: crate::now_ms(),
            kind: kind.to_string(),
            actor: SYSTEM.to_string(),
            revision: None,
            service: service.map(str::to_string),
            summary,
            detail,
        });
    }
}
