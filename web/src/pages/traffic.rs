//! `/traffic`: per service, version and route, requests per second, success rate and latency
//! quantiles over the last fifteen minutes, or (with a Prometheus, `?range=1h|6h|24h`) longer.

use crate::api::{Golden, LimitedTraffic, Point, RouteTraffic, ServiceTraffic, TrafficView};
use crate::chart::{Series, TimeChart};
use leptos::prelude::*;

#[server(prefix = "/api/v1/ui", endpoint = "traffic")]
pub async fn get_traffic(range: String) -> Result<TrafficView, ServerFnError> {
    let range_s = crate::api::traffic_range(&range).unwrap_or(900);
    expect_context::<crate::ssr::Backend>().0.traffic(range_s).await.map_err(ServerFnError::new)
}

#[component]
pub fn TrafficPage() -> impl IntoView {
    let tick = crate::live::live_tick();
    let query = leptos_router::hooks::use_query_map();
    let range = move || query.with(|q| q.get("range")).unwrap_or_else(|| "15m".into());
    let traffic = Resource::new(move || (tick.get(), range()), |(_, range)| get_traffic(range));
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || traffic.get().map(|r| match r {
                Ok(t) => {
                    let span = crate::api::TRAFFIC_RANGES.iter().find(|r| r.0 == t.span_s).map_or("15 min", |r| r.2).to_string();
                    let ranges = t.history.then(|| view! {
                        <nav class="toolbar card" aria-label="Range">
                            {crate::api::TRAFFIC_RANGES.iter().map(|(s, name, label)| view! {
                                <a class="button" class:active=*s == t.span_s data-testid=format!("range-{name}") href=format!("/traffic?range={name}")>{*label}</a>
                            }).collect_view()}
                        </nav>
                    });
                    let body = if t.services.is_empty() {
                        view! { <p class="card" data-testid="traffic-empty">{format!("No traffic reported in the last {span}.")}</p> }.into_any()
                    } else {
                        let (window_s, step_s) = (t.window_s, t.step_s);
                        t.services.into_iter().map(|s| view! { <ServiceCharts service=s window_s step_s span=span.clone()/> }.into_any()).collect_view().into_any()
                    };
                    view! { {ranges} {body} }.into_any()
                }
                Err(e) => view! {
                    <p class="error" data-testid="traffic-error">{e.to_string()}" "<a href="/traffic">"Show the last 15 minutes"</a></p>
                }.into_any(),
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

    fn unit(self) -> &'static str {
        match self {
            Metric::Rps => "req/s",
            Metric::Success => "%",
            _ => "ms",
        }
    }

    /// Why the chart has nothing to draw: its points are whole steps of `step_s` over `span`.
    fn empty(self, step_s: u64, span: &str) -> String {
        let what = match self {
            Metric::Rps => return format!("No requests reported in the last {span}."),
            Metric::Success => "success rate",
            _ => "latency",
        };
        format!("No complete {step_s}-second step of the last {span} has requests yet: no {what} to draw.")
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
fn ServiceCharts(service: ServiceTraffic, window_s: u64, step_s: u64, span: String) -> impl IntoView {
    let name = service.service.clone();
    let charts = [Metric::Rps, Metric::Success, Metric::P50, Metric::P95, Metric::P99]
        .into_iter()
        .map(|m| {
            let series: Vec<Series> = service
                .versions
                .iter()
                .map(|v| Series {
                    label: v.version.clone(),
                    values: v.points.iter().map(|p| (p.t * 1000, m.of(&p.golden))).collect(),
                    marks: Vec::new(),
                })
                .collect();
            let headline = m.of(&service.golden).map_or("-".to_string(), |v| format!("{v:.1}"));
            let range = matches!(m, Metric::Success).then_some((0.0, 100.0));
            view! {
                <TimeChart testid=format!("chart-{}", m.slug()) title=format!("{name} {}", m.title()) unit=m.unit()
                    series range empty=m.empty(step_s, &span)
                    headline=Some((headline, format!("all versions, last {window_s} s")))/>
            }
        })
        .collect_view();
    view! {
        <section class="card" data-testid=format!("traffic-{name}")>
            <h2>{name.clone()}</h2>
            <div class="charts">{charts}</div>
            {(!service.routes.is_empty()).then(|| view! { <RouteTable routes=service.routes.clone() span=span.clone()/> })}
            {(!service.rate_limits.is_empty()).then(|| view! {
                <RateLimits limits=service.rate_limits.clone() limited=service.limited.clone()/>
            })}
        </section>
    }
    .into_any()
}

/// Each route as callers matched it: the last minute in numbers, the range as sparklines.
#[component]
fn RouteTable(routes: Vec<RouteTraffic>, span: String) -> impl IntoView {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    view! {
        <table class="routes" data-testid="traffic-routes">
            <thead><tr>
                <th>"Route"</th><th>"RPS (1 min)"</th><th>"Success"</th><th>"p50"</th><th>"p99"</th>
                <th>{format!("RPS, {span}")}</th><th>{format!("Success, {span}")}</th><th>{format!("p99, {span}")}</th>
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

/// The y scale of a sparkline.
fn scale(points: &[Point], metric: Metric) -> f64 {
    match metric {
        Metric::Success => 100.0,
        _ => points.iter().filter_map(|p| metric.of(&p.golden)).fold(0.0, f64::max).max(1e-9) * 1.1,
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

#[component]
fn Spark(points: Vec<Point>, metric: Metric) -> impl IntoView {
    const SW: f64 = 120.0;
    const SH: f64 = 24.0;
    let max = scale(&points, metric);
    let values: Vec<(u64, Option<f64>)> = points.iter().map(|p| (p.t * 1000, metric.of(&p.golden))).collect();
    let alt = crate::chart::summary(
        metric.title(),
        metric.unit(),
        &[Series { label: "15 min".into(), values, marks: Vec::new() }],
    );
    view! {
        <svg class="spark" data-testid=format!("spark-{}", metric.slug()) viewBox=format!("0 0 {SW} {SH}") width=SW height=SH
            role="img" aria-label=alt>
            <polyline class="line seg0" points=polyline(&points, metric, max, SW, SH)></polyline>
        </svg>
    }
}
