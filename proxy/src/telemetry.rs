//! Pushes what the proxy counted to the control plane every two seconds: the change since the
//! last report the control plane accepted, so a failed push is carried into the next one.
//! Every report, empty or not, is also the proxy's heartbeat. A control plane that falls behind
//! answers 429 with `Retry-After`: the proxy waits that long (at most [`SLOWEST`]) and sends
//! what it counted meanwhile in one report, so nothing is dropped. A control plane with a large
//! fleet asks for reports less often on each accepted one (`x-trellis-report-every`).

use crate::Shared;
use crate::client::link::Reported;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use trellis_model::telemetry::{BUCKETS, Denial, Direction, Report, Series, TcpSeries};

const EVERY: Duration = Duration::from_secs(2);
/// The longest a control plane may hold reports back: well within its heartbeat timeout, as
/// it records each deferred report as a heartbeat.
const SLOWEST: Duration = Duration::from_secs(8);

type Key = (Direction, String, String, String);

pub async fn push(shared: Arc<Shared>, client: crate::client::ControlPlane, mut shutdown: crate::sync::Shutdown) {
    if !shared.wait_for_identity(&mut shutdown).await {
        return;
    }
    let mut accepted: HashMap<Key, (u64, u64, [u64; BUCKETS])> = HashMap::new();
    let mut accepted_denials: HashMap<(String, String), u64> = HashMap::new();
    let mut accepted_limited: HashMap<(String, String), u64> = HashMap::new();
    let mut accepted_tcp: HashMap<Key, TcpSeries> = HashMap::new();
    let mut seq = 0;
    let mut wait = EVERY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            () = shutdown.recv() => return,
        }
        wait = EVERY;
        let now = shared.metrics.series();
        // Sent even when empty: a report is also the proxy's heartbeat.
        let series = deltas(&now, &accepted);
        let (denials, limits) = (shared.metrics.denials(), shared.metrics.limited());
        let (denied, limited) = (refusals(&denials, &accepted_denials), refusals(&limits, &accepted_limited));
        let tcp_now = shared.metrics.tcp.series();
        let tcp = tcp_deltas(&tcp_now, &accepted_tcp);
        seq += 1;
        let report = Report { proxy_id: shared.settings.proxy_id.clone(), seq, series, denied, limited, tcp };
        match send(&client, report).await {
            Ok(Reported::Taken(every)) => {
                wait = asked(every, EVERY);
                for s in now {
                    accepted.insert((s.direction, s.service, s.version, s.route), (s.requests, s.failures, s.buckets));
                }
                accepted_denials.extend(denials);
                accepted_limited.extend(limits);
                for t in tcp_now {
                    accepted_tcp.insert((t.direction, t.service.clone(), t.version.clone(), String::new()), t);
                }
            }
            Ok(Reported::Deferred(retry)) => {
                wait = asked(retry, EVERY * 2);
                tracing::debug!(?wait, "the control plane asks for fewer reports; the counts go with the next one");
            }
            Ok(Reported::Refused(status, error)) => tracing::warn!(%status, %error, "telemetry report refused"),
            Err(e) => tracing::debug!(error = %e, "telemetry not delivered; it goes with the next report"),
        }
    }
}

/// Sends a report on the duplex stream when one is open, else POSTs it.
async fn send(client: &crate::client::ControlPlane, report: Report) -> Result<Reported, String> {
    let body = serde_json::to_vec(&report).unwrap_or_default();
    if let Some(answer) = client.link.report(report).await {
        return answer;
    }
    let resp = client.post(trellis_model::fleet::TELEMETRY, body).await?;
    let seconds = |name: &str| crate::client::link::seconds(resp.headers(), name);
    Ok(match resp.status() {
        s if s.is_success() => Reported::Taken(seconds(trellis_model::fleet::REPORT_EVERY_HEADER)),
        http::StatusCode::TOO_MANY_REQUESTS => Reported::Deferred(seconds(http::header::RETRY_AFTER.as_str())),
        s => Reported::Refused(
            s.as_u16(),
            String::from_utf8_lossy(&resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default())
                .into_owned(),
        ),
    })
}

/// How long the control plane asks the proxy to wait before its next report: the seconds it
/// said (`Retry-After` on a deferred report, `x-trellis-report-every` on an accepted one),
/// else `default`; between [`EVERY`] and [`SLOWEST`].
fn asked(seconds: Option<u64>, default: Duration) -> Duration {
    seconds.map_or(default, Duration::from_secs).clamp(EVERY, SLOWEST)
}

/// Refusals by (caller, what refused) since the accepted totals.
fn refusals(now: &[((String, String), u64)], accepted: &HashMap<(String, String), u64>) -> Vec<Denial> {
    now.iter()
        .filter_map(|(key, n)| {
            let requests = n.checked_sub(accepted.get(key).copied().unwrap_or(0))?;
            (requests > 0).then(|| Denial { caller: key.0.clone(), by: key.1.clone(), requests })
        })
        .collect()
}

/// TCP connections' change since the accepted totals; series without any are left out.
fn tcp_deltas(now: &[TcpSeries], accepted: &HashMap<Key, TcpSeries>) -> Vec<TcpSeries> {
    now.iter()
        .filter_map(|t| {
            let key = (t.direction, t.service.clone(), t.version.clone(), String::new());
            let counts = accepted.get(&key).map_or(t.counts, |a| t.counts.since(&a.counts));
            (!counts.is_empty()).then(|| TcpSeries { counts, ..t.clone() })
        })
        .collect()
}

/// What changed since the accepted totals; series without new requests are left out.
fn deltas(now: &[crate::metrics::Series], accepted: &HashMap<Key, (u64, u64, [u64; BUCKETS])>) -> Vec<Series> {
    now.iter()
        .filter_map(|s| {
            let key = (s.direction, s.service.clone(), s.version.clone(), s.route.clone());
            let (requests, failures, buckets) = accepted.get(&key).copied().unwrap_or((0, 0, [0; BUCKETS]));
            let requests = s.requests.checked_sub(requests)?;
            (requests > 0).then(|| Series {
                direction: s.direction,
                service: s.service.clone(),
                version: s.version.clone(),
                route: s.route.clone(),
                requests,
                failures: s.failures.saturating_sub(failures),
                buckets: s.buckets.iter().zip(buckets).map(|(n, a)| n.saturating_sub(a)).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_plane_sets_the_pace_of_reports_within_bounds() {
        let after = |v| asked(v, EVERY * 2);
        assert_eq!(after(Some(4)), Duration::from_secs(4));
        assert_eq!(after(Some(600)), SLOWEST, "never past the heartbeat timeout");
        assert_eq!(after(Some(0)), EVERY);
        assert_eq!(after(None), EVERY * 2, "unsaid (or a date): twice as slow");
        // An accepted report may carry the interval the control plane asks for.
        assert_eq!(asked(Some(4), EVERY), Duration::from_secs(4));
        assert_eq!(asked(None, EVERY), EVERY, "the usual two seconds");
    }
}
