//! Traffic history beyond the fifteen minutes kept in memory, from a Prometheus that scrapes
//! the proxies (`TRELLIS_PROMETHEUS_URL`; see the README's Prometheus section). The queries
//! and the reading of their answers are plain functions; [`history`] asks.

use crate::https::Client;
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use trellis_api::{Golden, Point};

/// Sixty points over any range, as the in-memory quarter hour has thirty.
pub fn step_for(range_s: u64) -> u64 {
    (range_s / 60).max(30)
}

/// What each series of points is keyed by: (service, version) inbound, (service, route) as
/// callers matched it.
pub type Keyed = BTreeMap<(String, String), Vec<Point>>;

/// What a service received per version, and what callers sent per route, over `range_s`.
pub struct History {
    pub versions: Keyed,
    pub routes: Keyed,
}

/// The PromQL of one figure, by `by` labels, over `direction`'s requests.
fn queries(direction: &str, by: &str, window_s: u64) -> [(Figure, String); 3] {
    let sel = format!(r#"direction="{direction}""#);
    let total = format!("sum by ({by}) (rate(trellis_proxy_requests_total{{{sel}}}[{window_s}s]))");
    // Failures as the proxy counts them: server errors and the proxy's own (statuses that are
    // not a class), and gRPC calls a service failed whatever their HTTP status.
    let failed = format!(
        r#"sum by ({by}) (rate(trellis_proxy_requests_total{{{sel},status!~"[1-4]xx"}}[{window_s}s]) or rate(trellis_proxy_requests_total{{{sel},status=~"[1-4]xx",grpc_status=~"{}"}}[{window_s}s]))"#,
        GRPC_FAILURES
    );
    let p99 = format!(
        "histogram_quantile(0.99, sum by (le, {by}) (rate(trellis_proxy_response_latency_seconds_bucket{{{sel}}}[{window_s}s])))"
    );
    [(Figure::Rate, total), (Figure::Failed, failed), (Figure::P99, p99)]
}

/// The gRPC codes the proxy counts as the service's failure (its `grpc_status` label is the
/// number): unknown, deadline exceeded, unimplemented, internal, unavailable, data loss.
const GRPC_FAILURES: &str = "2|4|12|13|14|15";

#[derive(Clone, Copy, PartialEq)]
enum Figure {
    Rate,
    Failed,
    P99,
}

/// Reads a `query_range` answer into points per key, adding `figure` to each.
fn read_matrix(answer: &serde_json::Value, key: [&str; 2], figure: Figure, into: &mut Keyed) -> Result<(), String> {
    if answer["status"] != "success" {
        let why = answer["error"].as_str().unwrap_or("an answer that is not Prometheus's");
        return Err(format!("Prometheus refused the query: {why}"));
    }
    for series in answer["data"]["result"].as_array().into_iter().flatten() {
        let label = |name: &str| series["metric"][name].as_str().unwrap_or_default().to_string();
        let points = into.entry((label(key[0]), label(key[1]))).or_default();
        for pair in series["values"].as_array().into_iter().flatten() {
            let t = pair[0].as_f64().unwrap_or_default() as u64;
            let Some(value) = pair[1].as_str().and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()) else {
                continue;
            };
            let at = match points.binary_search_by_key(&t, |p| p.t) {
                Ok(i) => i,
                Err(i) => {
                    points.insert(i, Point { t, golden: Golden::default() });
                    i
                }
            };
            let golden = &mut points[at].golden;
            match figure {
                Figure::Rate => golden.rps = value,
                // Kept as failures per second until the rate is known (see `finish`).
                Figure::Failed => golden.success_rate = Some(value),
                Figure::P99 => golden.p99_ms = Some(value * 1000.0),
            }
        }
    }
    Ok(())
}

/// Failures per second into a success rate; requests over the step; no rate, no point.
fn finish(points: &mut Keyed, step_s: u64) {
    for series in points.values_mut() {
        series.retain(|p| p.golden.rps > 0.0);
        for p in series.iter_mut() {
            let failed = p.golden.success_rate.unwrap_or(0.0);
            p.golden.success_rate = Some((1.0 - failed / p.golden.rps).clamp(0.0, 1.0));
            p.golden.requests = (p.golden.rps * step_s as f64).round() as u64;
        }
    }
    points.retain(|_, series| !series.is_empty());
}

/// The last `range_s` seconds up to `end_s`, in steps of [`step_for`], from Prometheus at `url`.
pub async fn history(client: &Client, url: &str, range_s: u64, end_s: u64) -> Result<History, String> {
    let step = step_for(range_s);
    let window = step.max(60);
    let mut versions = Keyed::new();
    let mut routes = Keyed::new();
    for (direction, by, into) in [
        ("inbound", ["dst_service", "dst_version"], &mut versions),
        ("outbound", ["dst_service", "route"], &mut routes),
    ] {
        for (figure, promql) in queries(direction, &by.join(", "), window) {
            let answer = query_range(client, url, &promql, end_s - range_s, end_s, step).await?;
            read_matrix(&answer, by, figure, into)?;
        }
    }
    finish(&mut versions, step);
    finish(&mut routes, step);
    Ok(History { versions, routes })
}

async fn query_range(
    client: &Client,
    url: &str,
    promql: &str,
    start: u64,
    end: u64,
    step: u64,
) -> Result<serde_json::Value, String> {
    let query = serde_urlencoded::to_string([
        ("query", promql.to_string()),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", step.to_string()),
    ])
    .map_err(|e| e.to_string())?;
    let uri = format!("{}/api/v1/query_range?{query}", url.trim_end_matches('/'));
    let req = http::Request::get(&uri)
        .body(http_body_util::Full::default())
        .map_err(|e| format!("TRELLIS_PROMETHEUS_URL {url:?}: {e}"))?;
    let asked = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| format!("Prometheus at {url} did not answer within 10 s"))?
        .map_err(|e| format!("cannot reach Prometheus at {url}: {}", crate::https::with_causes(&e)))?;
    let body = asked.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    serde_json::from_slice(&body).map_err(|_| format!("Prometheus at {url} answered something that is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_count_failures_as_the_proxy_does() {
        let [(_, total), (_, failed), (_, p99)] = queries("inbound", "dst_service, dst_version", 60);
        assert_eq!(
            total,
            r#"sum by (dst_service, dst_version) (rate(trellis_proxy_requests_total{direction="inbound"}[60s]))"#
        );
        assert!(
            failed.contains(r#"status!~"[1-4]xx""#) && failed.contains(r#"grpc_status=~"2|4|12|13|14|15""#),
            "{failed}"
        );
        assert!(p99.starts_with("histogram_quantile(0.99, sum by (le, dst_service, dst_version)"), "{p99}");
    }

    #[test]
    fn a_range_answer_becomes_points_with_rates_success_and_p99() {
        let matrix = |values: &str| -> serde_json::Value {
            serde_json::from_str(&format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[
                    {{"metric":{{"dst_service":"inventory","dst_version":"v2"}},"values":{values}}}]}}}}"#
            ))
            .unwrap()
        };
        let key = ["dst_service", "dst_version"];
        let mut points = Keyed::new();
        read_matrix(&matrix(r#"[[1000,"4"],[1060,"2"],[1120,"0"]]"#), key, Figure::Rate, &mut points).unwrap();
        read_matrix(&matrix(r#"[[1000,"1"]]"#), key, Figure::Failed, &mut points).unwrap();
        read_matrix(&matrix(r#"[[1000,"0.25"],[1060,"NaN"]]"#), key, Figure::P99, &mut points).unwrap();
        finish(&mut points, 60);
        let series = &points[&("inventory".to_string(), "v2".to_string())];
        assert_eq!(series.len(), 2, "a step without requests is no point");
        assert_eq!((series[0].t, series[0].golden.rps, series[0].golden.requests), (1000, 4.0, 240));
        assert_eq!(series[0].golden.success_rate, Some(0.75));
        assert_eq!(series[0].golden.p99_ms, Some(250.0));
        assert_eq!((series[1].golden.success_rate, series[1].golden.p99_ms), (Some(1.0), None));
        let refused: serde_json::Value = serde_json::from_str(r#"{"status":"error","error":"parse error"}"#).unwrap();
        let err = read_matrix(&refused, key, Figure::Rate, &mut points).unwrap_err();
        assert!(err.contains("parse error"), "{err}");
    }
}
