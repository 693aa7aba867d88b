//! The audit trail: every change and who made it. Producers never wait: they hand events to
//! one writer, which appends them to a durable spool (fsynced) and then to the database, in
//! order, each linked into the hash chain. A database outage delays events; it never loses them.

pub mod chain;
pub mod export;
pub mod spool;

use crate::store::{NewEvent, Store};
use crate::sync::Locked;
use serde_json::json;
use spool::{Spool, Spooled};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use trellis_api::RevisionView;
pub use trellis_api::short_sha as short;

/// Events between producers and the spool. The writer empties it into the spool whether or
/// not the database answers, so it fills only if the disk stalls.
const QUEUE: usize = 65_536;
/// Events per database transaction.
const BATCH: usize = 1_000;
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The actor for changes the control plane makes on its own.
pub const SYSTEM: &str = "trellis";

enum Msg {
    Event(NewEvent),
    /// Try to store everything spooled, then answer (shutdown, tests).
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    health: std::sync::Arc<std::sync::Mutex<Backlog>>,
}

/// What waits in the spool, and why, for `trellis check`.
#[derive(Clone, Debug, Default)]
pub struct Backlog {
    pub bytes: u64,
    pub error: Option<String>,
}

impl Audit {
    /// Starts the writer with its spool in `spool_dir`; what an earlier run left there is
    /// stored first.
    pub fn start(store: Store, spool_dir: &std::path::Path) -> std::io::Result<Self> {
        let spool = Spool::open(spool_dir)?;
        let (tx, rx) = mpsc::channel::<Msg>(QUEUE);
        let health = std::sync::Arc::new(std::sync::Mutex::new(Backlog { bytes: spool.backlog(), error: None }));
        tokio::spawn(write(store, spool, rx, health.clone()));
        Ok(Audit { tx, health })
    }

    /// Events written to the spool but not yet to the database.
    pub fn backlog(&self) -> Backlog {
        self.health.locked().clone()
    }

    pub fn record(&self, event: NewEvent) {
        if let Err(e) = self.tx.try_send(Msg::Event(event)) {
            tracing::error!(error = %e, "audit queue full (the spool's disk is stalled); event dropped");
        }
    }

    /// Waits (at most `max`) until what was recorded so far is stored, or the database has
    /// refused it once more (it then stays spooled for the next run).
    pub async fn flush(&self, max: Duration) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(max, wait).await;
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

/// The writer: channel → spool (fsync) → database, retrying the database with backoff while
/// it keeps taking events into the spool.
async fn write(
    store: Store,
    mut spool: Spool,
    mut rx: mpsc::Receiver<Msg>,
    health: std::sync::Arc<std::sync::Mutex<Backlog>>,
) {
    let mut delay = Duration::from_millis(100);
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let first = match retry_at {
            Some(at) if spool.backlog() > 0 => tokio::select! {
                m = rx.recv() => m.map(Some),
                _ = tokio::time::sleep_until(at) => Some(None),
            },
            _ => rx.recv().await.map(Some),
        };
        let Some(first) = first else {
            // Every producer is gone: one last attempt; what remains waits in the spool.
            let _ = drain(&store, &mut spool).await;
            return;
        };
        let (mut batch, mut flushes) = (Vec::new(), Vec::new());
        let mut next = first;
        while let Some(m) = next.take() {
            match m {
                Msg::Event(e) => batch.push(Spooled::new(e)),
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH * 5 {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty()
            && let Err(e) = spool.append(&batch)
        {
            tracing::error!(error = %e, events = batch.len(), "audit spool refused events; they are lost");
        }
        let due = retry_at.is_none_or(|at| tokio::time::Instant::now() >= at) || !flushes.is_empty();
        if due && spool.backlog() > 0 {
            let result = drain(&store, &mut spool).await;
            *health.locked() = Backlog { bytes: spool.backlog(), error: result.as_ref().err().cloned() };
            match result {
                Ok(()) => {
                    delay = Duration::from_millis(100);
                    retry_at = None;
                    // The other replicas' audit pages update too.
                    let _ = store.notify(crate::store::topic::AUDIT).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, backlog_bytes = spool.backlog(), retry_in = ?delay, "audit events wait in the spool");
                    retry_at = Some(tokio::time::Instant::now() + delay);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Stores everything spooled, oldest first, in batches.
async fn drain(store: &Store, spool: &mut Spool) -> Result<(), String> {
    loop {
        let events = spool.peek(BATCH).map_err(|e| e.to_string())?;
        let Some(end) = events.last().map(|(_, end)| *end) else {
            return Ok(());
        };
        let batch: Vec<Spooled> = events.into_iter().map(|(e, _)| e).collect();
        chain::append(store, &batch).await.map_err(|e| e.to_string())?;
        spool.ack(end).map_err(|e| e.to_string())?;
    }
}
