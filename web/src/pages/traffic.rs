//! `/traffic`: per service, version and route, requests per second, success rate and latency
//! quantiles over the last fifteen minutes.

use crate::api::{Golden, LimitedTraffic, Point, RouteTraffic, ServiceTraffic, TrafficView};
use leptos::prelude::*;

#[server(prefix = "/api/v1/ui", endpoint = "traffic")]
pub async fn get_traffic() -> Result<TrafficView, ServerFnError> {
    Ok(expect_context::<crate::ssr::Backend>().0.traffic())
}

#[component]
pub fn TrafficPage() -> impl IntoView {
    let traffic = crate::live::live_resource(get_traffic);
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || traffic.get().map(|r| match r {
                Ok(t) if t.services.is_empty() => view! { <p class="card" data-testid="traffic-empty">"No traffic reported in the last 15 minutes."</p> }.into_any(),
                Ok(t) => {
                    let window_s = t.window_s;
                    t.services.into_iter().map(|s| view! { <ServiceCharts service=s window_s/> }.into_any()).collect_view().into_any()
                }
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
    }
}

/// Which number a chart plots, and how to label it.
#[derive(Clone, Copy)]
enum Metric {
    Rps,
    Success,
    P50,
    P95,
    P99,
}

impl Metric {
    fn of(self, g: &Golden) -> Option<f64> {
        match self {
            Metric::Rps => Some(g.rps),
            Metric::Success => g.success_rate.map(|r| r * 100.0),
            Metric::P50 => g.p50_ms,
            Metric::P95 => g.p95_ms,
            Metric::P99 => g.p99_ms,
        }
    }

    /// For test ids: `requests / s` → `requestss`, as the Playwright specs know them.
    fn slug(self) -> String {
        self.title().replace([' ', '/', '%'], "")
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Rps => "requests / s",
            Metric::Success => "success %",
            Metric::P50 => "p50 ms",
            Metric::P95 => "p95 ms",
            Metric::P99 => "p99 ms",
        }
    }
}

#[component]
fn ServiceCharts(service: ServiceTraffic, window_s: u64) -> impl IntoView {
    let name = service.service.clone();
    let legend = service
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| view! { <span class=format!("legend seg{}", i % 4)>{v.version.clone()}</span> })
        .collect_view();
    let by_version: Vec<Vec<Point>> = service.versions.iter().map(|v| v.points.clone()).collect();
    view! {
        <section class="card" data-testid=format!("traffic-{name}")>
            <h2>{name.clone()} " " {legend}</h2>
            <div class="charts">
                {[Metric::Rps, Metric::Success, Metric::P50, Metric::P95, Metric::P99]
                    .into_iter()
                    .map(|m| view! { <Chart lines=by_version.clone() metric=m headline=m.of(&service.golden) window_s/> })
                    .collect_view()}
            </div>
            {(!service.routes.is_empty()).then(|| view! { <RouteTable routes=service.routes.clone()/> })}
            {(!service.rate_limits.is_empty()).then(|| view! {
                <RateLimits limits=service.rate_limits.clone() limited=service.limited.clone()/>
            })}
        </section>
    }
    .into_any()
}

/// Each route as callers matched it: the last minute in numbers, fifteen minutes as sparklines.
#[component]
fn RouteTable(routes: Vec<RouteTraffic>) -> impl IntoView {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    view! {
        <table class="routes" data-testid="traffic-routes">
            <thead><tr>
                <th>"Route"</th><th>"RPS (1 min)"</th><th>"Success"</th><th>"p50"</th><th>"p99"</th>
                <th>"RPS, 15 min"</th><th>"Success, 15 min"</th><th>"p99, 15 min"</th>
            </tr></thead>
            <tbody>
                {routes.into_iter().map(|r| {
                    let ok = r.golden.success_rate.map_or("-".to_string(), |s| format!("{:.1}%", s * 100.0));
                    let spark = |m: Metric| view! { <td><Spark points=r.points.clone() metric=m/></td> };
                    view! {
                        <tr data-testid="traffic-route">
                            <td><code>{r.route.clone()}</code></td>
                            <td>{format!("{:.2}", r.golden.rps)}</td>
                            <td>{ok}</td>
                            <td>{ms(r.golden.p50_ms)}</td>
                            <td>{ms(r.golden.p99_ms)}</td>
                            {spark(Metric::Rps)}
                            {spark(Metric::Success)}
                            {spark(Metric::P99)}
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The service's rate limits, and who was refused by them in the last minute.
#[component]
fn RateLimits(limits: Vec<String>, limited: Vec<LimitedTraffic>) -> impl IntoView {
    view! {
        <div class="rate-limits" data-testid="traffic-rate-limits">
            <h3>"Rate limits " <small>"(per proxy)"</small></h3>
            <ul>{limits.into_iter().map(|l| view! { <li><code>{l}</code></li> }).collect_view()}</ul>
            {if limited.is_empty() {
                view! { <p class="muted" data-testid="traffic-limited-none">"No caller was refused in the last minute."</p> }.into_any()
            } else {
                view! {
                    <table class="routes" data-testid="traffic-limited">
                        <thead><tr><th>"Caller"</th><th>"Refused by"</th><th>"Refused (1 min)"</th><th>"Refused / s"</th></tr></thead>
                        <tbody>
                            {limited.into_iter().map(|l| view! {
                                <tr data-testid=format!("limited-{}", &l.caller)>
                                    <td>{l.caller.clone()}</td>
                                    <td><code>{l.by}</code></td>
                                    <td>{l.requests.to_string()}</td>
                                    <td>{format!("{:.2}", l.rps)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </div>
    }
}

const W: f64 = 300.0;
const H: f64 = 90.0;

/// The y scale shared by every line of one chart.
fn scale(lines: &[Vec<Point>], metric: Metric) -> f64 {
    match metric {
        Metric::Success => 100.0,
        _ => lines.iter().flatten().filter_map(|p| metric.of(&p.golden)).fold(0.0, f64::max).max(1e-9) * 1.1,
    }
}

/// SVG polyline points for one series in a `w` × `h` box.
fn polyline(points: &[Point], metric: Metric, max: f64, w: f64, h: f64) -> String {
    let n = points.len().max(2) - 1;
    points
        .iter()
        .enumerate()
        .filter_map(|(j, p)| {
            let y = metric.of(&p.golden)?;
            Some(format!("{:.1},{:.1} ", j as f64 / n as f64 * w, h - (y / max).min(1.0) * h))
        })
        .collect()
}

/// A metric's fifteen minutes by version, under the service's figure over the last complete
/// `window_s` (all versions together: what the topology shows over that window).
#[component]
fn Chart(lines: Vec<Vec<Point>>, metric: Metric, headline: Option<f64>, window_s: u64) -> impl IntoView {
    let max = scale(&lines, metric);
    let drawn = lines
        .iter()
        .enumerate()
        .map(|(i, l)| view! { <polyline class=format!("line seg{}", i % 4) points=polyline(l, metric, max, W, H)></polyline> })
        .collect_view();
    view! {
        <figure class="chart" data-testid=format!("chart-{}", metric.slug())>
            <figcaption>
                {metric.title()}
                <strong data-testid="chart-headline">{headline.map_or(" -".to_string(), |v| format!(" {v:.1}"))}</strong>
                <small class="muted">{format!(" last {} s", window_s)}</small>
            </figcaption>
            <svg viewBox=format!("0 0 {W} {H}") width=W height=H>
                <line class="axis" x1="0" y1=H x2=W y2=H></line>
                {drawn}
            </svg>
        </figure>
    }
}

#[component]
fn Spark(points: Vec<Point>, metric: Metric) -> impl IntoView {
    const SW: f64 = 120.0;
    const SH: f64 = 24.0;
    let max = scale(std::slice::from_ref(&points), metric);
    view! {
        <svg class="spark" data-testid=format!("spark-{}", metric.slug()) viewBox=format!("0 0 {SW} {SH}") width=SW height=SH>
            <polyline class="line seg0" points=polyline(&points, metric, max, SW, SH)></polyline>
        </svg>
    }
}
