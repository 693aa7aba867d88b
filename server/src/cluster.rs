//! Replicas of the control plane on one Postgres, and the one among them that leads.
//!
//! Every replica follows git, serves its proxies, the API and the dashboard. What must happen
//! once (rollout ticks and analyses, outcome commits, rollout starts) is done by the leader:
//! the holder of a lease in the database, renewed every second and lasting three. A leader
//! that cannot renew steps down half a second before its lease could be taken, and the others
//! try for a lapsed lease every half second, so a dead leader is replaced within four
//! seconds. Each term carries a fencing token that the leader's writes name: a leader that
//! stalled past its term (a pause, a partition) is refused by the database, not trusted.
//!
//! With SQLite there is one control plane (the data directory's lock proves it): it takes the
//! lease at once and leads alone. Kubernetes' leader election works alike, with 15 s leases.

use crate::audit::Audit;
use crate::store::{Fence, LEADER, Lease, ReplicaRow, Store, topic};
use crate::sync::{Locked, Shutdown};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use trellis_api::{ClusterView, ReplicaView};

pub const LEASE_TTL: Duration = Duration::from_secs(3);
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
pub const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);
/// A leader that could not renew stops leading this long before its lease ends.
const STEP_DOWN_MARGIN: Duration = Duration::from_millis(500);
/// A claim that takes longer counts as failed; the loop goes on.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(1);
/// A replica not heard from for this long is shown as down.
pub const REPLICA_DOWN: Duration = Duration::from_secs(10);
/// Replicas heard from within this are listed.
const REPLICA_LISTED: Duration = Duration::from_secs(60);

/// This replica's term as leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub token: i64,
    /// When the term began (unix ms, the database's clock).
    pub since_ms: i64,
    /// It leads until then, unless it renews first.
    pub deadline: Instant,
}

/// What the answer to a claim made at `started` means for the replica that made it: leading
/// (a term until its lease ends, less a margin), not leading, or, when the database did not
/// answer, leading on until the deadline it already had.
pub fn after_claim(
    current: Option<&Term>,
    started: Instant,
    now: Instant,
    answer: Option<Option<&Lease>>,
) -> Option<Term> {
    match answer {
        Some(Some(lease)) => {
            let ttl = Duration::from_millis((lease.expires_at - lease.renewed_at).max(0) as u64);
            let deadline = started + ttl.saturating_sub(STEP_DOWN_MARGIN);
            (now < deadline).then_some(Term { token: lease.token, since_ms: lease.acquired_at, deadline })
        }
        Some(None) => None,
        None => current.filter(|t| now < t.deadline).cloned(),
    }
}

#[derive(Clone)]
pub struct Cluster(Arc<Shared>);

struct Shared {
    me: ReplicaRow,
    store: Store,
    audit: Audit,
    term: watch::Sender<Option<Term>>,
    seen: Mutex<Seen>,
}

/// The last look at the database: the lease and the replicas.
#[derive(Clone, Debug, Default)]
struct Seen {
    lease: Option<Lease>,
    replicas: Vec<ReplicaRow>,
    db_now: i64,
    error: Option<String>,
}

impl Cluster {
    pub fn new(store: Store, audit: Audit, id: String, address: String) -> Self {
        let me = ReplicaRow {
            id,
            address,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: crate::now_ms(),
            seen_at: 0,
        };
        let (term, _) = watch::channel(None);
        Cluster(Arc::new(Shared { me, store, audit, term, seen: Mutex::new(Seen::default()) }))
    }

    pub fn id(&self) -> &str {
        &self.0.me.id
    }

    /// The current term's fence while this replica leads.
    pub fn fence(&self) -> Option<Fence> {
        let term = self.0.term.borrow();
        term.as_ref()
            .filter(|t| Instant::now() < t.deadline)
            .map(|t| Fence { holder: self.0.me.id.clone(), token: t.token })
    }

    pub fn leads(&self) -> bool {
        self.fence().is_some()
    }

    /// Wakes on every change of this replica's term (taken, renewed into a new one, lost).
    pub fn terms(&self) -> watch::Receiver<Option<Term>> {
        self.0.term.subscribe()
    }

    /// The leader's address, when another replica leads.
    pub fn leader_address(&self) -> Option<String> {
        let seen = self.0.seen.locked();
        let lease = seen.lease.as_ref().filter(|l| l.expires_at > l.now)?;
        seen.replicas.iter().find(|r| r.id == lease.holder && r.id != self.0.me.id).map(|r| r.address.clone())
    }

    pub fn view(&self) -> ClusterView {
        let mut seen = self.0.seen.locked().clone();
        // This replica's own term is known better than its last look: it leads until its
        // deadline, and not after.
        let leads = self.leads();
        if let Some(l) = seen.lease.as_mut() {
            if leads {
                l.holder = self.0.me.id.clone();
                l.expires_at = l.expires_at.max(l.now + 1);
            } else if l.holder == self.0.me.id {
                l.expires_at = l.now;
            }
        }
        let lease = seen.lease.as_ref().filter(|l| l.expires_at > l.now);
        ClusterView {
            replica: self.0.me.id.clone(),
            leader: lease.map(|l| l.holder.clone()),
            leader_since: lease.map(|l| l.acquired_at),
            term: seen.lease.as_ref().map_or(0, |l| l.token),
            lease_age_ms: lease.map(|l| (l.now - l.renewed_at).max(0)),
            replicas: seen
                .replicas
                .iter()
                .map(|r| ReplicaView {
                    id: r.id.clone(),
                    address: r.address.clone(),
                    version: r.version.clone(),
                    started_at: r.started_at,
                    seen_ago_ms: (seen.db_now - r.seen_at).max(0),
                    up: seen.db_now - r.seen_at < REPLICA_DOWN.as_millis() as i64,
                    leader: lease.is_some_and(|l| l.holder == r.id),
                })
                .collect(),
            error: seen.error.clone(),
        }
    }

    /// One claim, made before the loop starts: a lone control plane leads from its first
    /// moment, not from the loop's first turn.
    pub async fn claim_now(&self) {
        self.turn(!self.0.store.is_shared()).await;
    }

    /// Claims or renews the lease, says this replica is alive and looks at the others, until
    /// shutdown; then gives the lease up so that another takes over at once.
    pub async fn run(self, mut shutdown: Shutdown) {
        // With SQLite no other control plane can exist: take the lease whoever held it.
        let mut force = !self.0.store.is_shared() && !self.leads();
        loop {
            if self.turn(force).await {
                force = false;
            }
            let wait = if self.leads() { RENEW_EVERY } else { CAMPAIGN_EVERY };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                () = shutdown.recv() => break,
            }
        }
        if self.leads()
            && let Err(e) = self.0.store.release_lease(LEADER, &self.0.me.id).await
        {
            tracing::warn!(error = %e, "cannot give up the leader's lease; another replica takes it when it lapses");
        }
        self.0.term.send_replace(None);
    }

    /// One claim and one look. Returns whether the database answered.
    async fn turn(&self, force: bool) -> bool {
        let started = Instant::now();
        let claim = self.0.store.claim_lease(LEADER, &self.0.me.id, LEASE_TTL.as_millis() as i64, force);
        let answer = match tokio::time::timeout(CLAIM_TIMEOUT, claim).await {
            Ok(Ok(lease)) => Some(lease),
            Ok(Err(e)) => {
                self.0.seen.locked().error = Some(e.to_string());
                None
            }
            Err(_) => {
                self.0.seen.locked().error = Some("the database did not answer within 1 s".into());
                None
            }
        };
        let before = self.0.term.borrow().clone();
        let mut next = after_claim(before.as_ref(), started, Instant::now(), answer.as_ref().map(Option::as_ref));
        // SQLite: the data directory's lock already makes this the only control plane, so a
        // slow database (one connection, a busy moment) never costs it the lead.
        if !self.0.store.is_shared() && answer.is_none() {
            next = before.clone().map(|t| Term { deadline: Instant::now() + LEASE_TTL, ..t });
        }
        self.became(before.as_ref(), next.as_ref());
        // The lease as granted is seen before this replica says it leads: a view in between
        // would show it leading under the previous leader's term.
        if let Some(Some(lease)) = &answer {
            self.0.seen.locked().lease = Some(lease.clone());
        }
        self.0.term.send_if_modified(|t| {
            let changed = t.as_ref().map(|t| t.token) != next.as_ref().map(|n| n.token);
            *t = next.clone();
            changed
        });
        if let Some(answer) = &answer {
            // A granted claim is the lease as it stands: only someone else's is read again.
            self.look(answer.clone()).await;
        }
        answer.is_some()
    }

    /// Says this replica is alive and reads the replicas, and the lease unless `granted`.
    async fn look(&self, granted: Option<Lease>) {
        let store = &self.0.store;
        let looked = async {
            store.replica_alive(&self.0.me).await?;
            let lease = match granted {
                Some(lease) => Some(lease),
                None => store.lease(LEADER).await?,
            };
            let (replicas, db_now) = store.replicas(REPLICA_LISTED.as_millis() as i64).await?;
            Ok::<_, crate::store::StoreError>((lease, replicas, db_now))
        };
        let seen = match tokio::time::timeout(CLAIM_TIMEOUT, looked).await {
            Ok(Ok((lease, replicas, db_now))) => Seen { lease, replicas, db_now, error: None },
            Ok(Err(e)) => Seen { error: Some(e.to_string()), ..self.0.seen.locked().clone() },
            Err(_) => {
                Seen { error: Some("the database did not answer within 1 s".into()), ..self.0.seen.locked().clone() }
            }
        };
        *self.0.seen.locked() = seen;
    }

    /// Logs and audits a change of leadership.
    fn became(&self, before: Option<&Term>, after: Option<&Term>) {
        match (before, after) {
            (None, Some(t)) => {
                tracing::info!(term = t.token, "this replica leads");
                self.0.audit.system(
                    "control_plane.leader",
                    None,
                    format!("replica {} leads the control plane (term {})", self.0.me.id, t.token),
                    serde_json::json!({ "replica": self.0.me.id, "address": self.0.me.address, "term": t.token }),
                );
            }
            (Some(b), Some(a)) if b.token != a.token => {
                tracing::warn!(from = b.token, to = a.token, "the lease lapsed and was taken again: a new term")
            }
            (Some(t), None) => {
                tracing::warn!(term = t.token, "this replica no longer leads (it could not renew its lease in time)")
            }
            _ => {}
        }
    }
}

/// Follows the other replicas' notifications (Postgres `LISTEN`), handing each topic to
/// `on`, until shutdown. A lost connection is made again; what was missed meanwhile the
/// callers' own polling catches up on.
pub async fn listen(store: Store, on: impl Fn(&str) + Send + 'static, mut shutdown: Shutdown) {
    if !store.is_shared() {
        return;
    }
    let mut delay = Duration::from_millis(200);
    loop {
        let mut listener = sqlx::postgres::PgListener::connect(store.url()).await;
        if let Ok(l) = &mut listener
            && let Err(e) = l.listen(crate::store::CHANNEL).await
        {
            listener = Err(e);
        }
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot listen for the other replicas");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    () = shutdown.recv() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        delay = Duration::from_millis(200);
        loop {
            tokio::select! {
                n = listener.try_recv() => match n {
                    Ok(Some(n)) => on(n.payload()),
                    // The connection dropped: every topic may have been missed.
                    Ok(None) => on(topic::ALL),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the other replicas' notifications; listening again");
                        break;
                    }
                },
                () = shutdown.recv() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(token: i64, ttl_ms: i64) -> Lease {
        Lease {
            holder: "me".into(),
            token,
            acquired_at: 100,
            renewed_at: 1_000,
            expires_at: 1_000 + ttl_ms,
            now: 1_000,
        }
    }

    #[test]
    fn a_granted_lease_is_a_term_that_ends_before_the_lease_does() {
        let t0 = Instant::now();
        let term = after_claim(None, t0, t0, Some(Some(&lease(4, 3_000)))).unwrap();
        assert_eq!((term.token, term.since_ms), (4, 100));
        assert_eq!(term.deadline, t0 + Duration::from_millis(2_500), "measured from when the claim was sent");
    }

    #[test]
    fn a_claim_answered_too_late_to_be_useful_is_not_a_term() {
        let t0 = Instant::now();
        assert_eq!(after_claim(None, t0, t0 + Duration::from_secs(3), Some(Some(&lease(1, 3_000)))), None);
    }

    #[test]
    fn another_holder_ends_the_term_at_once() {
        let t0 = Instant::now();
        let term = after_claim(None, t0, t0, Some(Some(&lease(1, 3_000))));
        assert_eq!(after_claim(term.as_ref(), t0, t0, Some(None)), None);
    }

    #[test]
    fn without_an_answer_a_leader_leads_until_its_deadline_and_not_after() {
        let t0 = Instant::now();
        let term = after_claim(None, t0, t0, Some(Some(&lease(2, 3_000))));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(after_claim(term.as_ref(), later, later, None), term, "still within the lease");
        let late = t0 + Duration::from_millis(2_500);
        assert_eq!(after_claim(term.as_ref(), late, late, None), None, "stepped down before the lease could be taken");
        assert_eq!(after_claim(None, t0, t0, None), None, "a follower stays one");
    }
}
