//! What every replica runs beside its listeners: the rollouts (leading them, or following the
//! leader's), and the exchange with the other replicas through the database (their proxies,
//! their telemetry).

use crate::state::AppState;
use crate::sync::Shutdown;
use std::time::Duration;

/// The rollouts' loop. On the leader: analyse and step every tick, commit outcomes; on taking
/// the lead, first take the states as the last leader left them. On the other replicas:
/// follow the leader's states, at once when it notifies, every tick when a notice was lost.
pub(super) async fn run_rollouts(
    app: AppState,
    follow_now: std::sync::Arc<tokio::sync::Notify>,
    mut shutdown: Shutdown,
) {
    let mut terms = app.cluster.terms();
    let mut led: Option<i64> = None;
    loop {
        let term = app.cluster.fence().map(|f| f.token);
        match term {
            Some(token) => {
                if led != Some(token) {
                    match app.store.rollouts().await {
                        Ok(saved) => {
                            app.rollouts.take_over(&app, saved).await;
                            led = Some(token);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the rollouts to take the lead; trying again"),
                    }
                }
                if led == Some(token) {
                    app.rollouts.tick(&app).await;
                    app.rollouts.record_outcomes(&app).await;
                }
            }
            None => {
                led = None;
                match app.store.rollouts().await {
                    Ok(saved) => {
                        app.rollouts.follow(&app, saved).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot read the leader's rollout states"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(crate::rollouts::TICK) => {}
            _ = follow_now.notified() => {}
            _ = terms.changed() => {}
            () = shutdown.recv() => return,
        }
    }
}

/// What replicas share every second: the proxies connected to each (this one's rows kept
/// fresh every third second), and the seconds of telemetry each one's proxies reported.
pub(super) async fn exchange(app: AppState, mut shutdown: Shutdown) {
    let mut imported: std::collections::BTreeSet<(String, u64)> = Default::default();
    for turn in 1u64.. {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.recv() => return,
        }
        if let Err(e) = app.fleet.exchange(app.cluster.leads(), turn.is_multiple_of(3)).await {
            tracing::warn!(error = %e, "cannot read the other replicas' proxies");
        }
        if app.store.is_shared()
            && let Err(e) = exchange_telemetry(&app, &mut imported).await
        {
            tracing::warn!(error = %e, "cannot share telemetry with the other replicas");
        }
    }
}

/// Adds the other replicas' seconds not yet added, then hands this one's finished seconds
/// on. A second written late (its replica was slow to commit) is still taken within ten seconds.
/// The first time, this replica's own seconds from before a restart are taken back too.
async fn exchange_telemetry(
    app: &AppState,
    imported: &mut std::collections::BTreeSet<(String, u64)>,
) -> Result<(), crate::store::StoreError> {
    const LOOKBACK_S: u64 = 10;
    let now_s = (crate::now_ms() / 1000) as u64;
    let first = imported.is_empty();
    let since = now_s.saturating_sub(if first { crate::telemetry::RETENTION_S } else { LOOKBACK_S });
    imported.retain(|(_, s)| *s >= since);
    let me = app.cluster.id();
    for (replica, at, data) in app.store.telemetry_seconds(since).await? {
        if (replica == me && !first) || !imported.insert((replica, at)) {
            continue;
        }
        match serde_json::from_str::<crate::telemetry::Second>(&data) {
            Ok(second) => app.telemetry.merge(at, &second, now_s),
            Err(e) => tracing::debug!(error = %e, "a second of telemetry this version cannot read"),
        }
    }
    // Never empty from here on: the next turns leave this replica's own seconds out.
    imported.insert((me.to_string(), now_s));
    hand_on_telemetry(app, now_s).await
}

/// Writes this replica's own seconds before `until_s` for the others (each once), and
/// removes seconds older than the buckets keep.
pub(super) async fn hand_on_telemetry(app: &AppState, until_s: u64) -> Result<(), crate::store::StoreError> {
    let mine: Vec<(u64, String)> = app
        .telemetry
        .take_finished(until_s)
        .into_iter()
        .map(|(at, second)| (at, serde_json::to_string(&second).unwrap_or_default()))
        .collect();
    let now_s = (crate::now_ms() / 1000) as u64;
    app.store.share_seconds(app.cluster.id(), &mine, now_s.saturating_sub(crate::telemetry::RETENTION_S)).await
}
