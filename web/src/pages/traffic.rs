//! `/traffic`: per service and version, requests per second, success rate and p99 latency
//! over the last fifteen minutes.

use crate::api::{Golden, ServiceTraffic, TrafficView};
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
                Ok(t) => t.services.into_iter().map(|s| view! { <ServiceCharts service=s/> }.into_any()).collect_view().into_any(),
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
fn ServiceCharts(service: ServiceTraffic) -> impl IntoView {
    let name = service.service.clone();
    let legend = service
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| view! { <span class=format!("legend seg{}", i % 4)>{v.version.clone()}</span> })
        .collect_view();
    view! {
        <section class="card" data-testid=format!("traffic-{name}")>
            <h2>{name.clone()} " " {legend}</h2>
            <div class="charts">
                {[Metric::Rps, Metric::Success, Metric::P50, Metric::P95, Metric::P99]
                    .into_iter()
                    .map(|m| view! { <Chart service=service.clone() metric=m/> })
                    .collect_view()}
            </div>
            {(!service.routes.is_empty()).then(|| view! {
                <table class="routes" data-testid="traffic-routes">
                    <thead><tr><th>"Route (last minute)"</th><th>"RPS"</th><th>"Success"</th><th>"p50"</th><th>"p99"</th></tr></thead>
                    <tbody>
                        {service.routes.iter().map(|r| {
                            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
                            let ok = r.golden.success_rate.map_or("-".to_string(), |s| format!("{:.1}%", s * 100.0));
                            view! {
                                <tr data-testid="traffic-route">
                                    <td><code>{r.route.clone()}</code></td>
                                    <td>{format!("{:.2}", r.golden.rps)}</td>
                                    <td>{ok}</td>
                                    <td>{ms(r.golden.p50_ms)}</td>
                                    <td>{ms(r.golden.p99_ms)}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </section>
    }
    .into_any()
}

const W: f64 = 300.0;
const H: f64 = 90.0;

#[component]
fn Chart(service: ServiceTraffic, metric: Metric) -> impl IntoView {
    let values: Vec<f64> =
        service.versions.iter().flat_map(|v| v.points.iter().filter_map(|p| metric.of(&p.golden))).collect();
    let max = match metric {
        Metric::Success => 100.0,
        _ => values.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.1,
    };
    let last = service.versions.iter().filter_map(|v| v.points.last().and_then(|p| metric.of(&p.golden))).next_back();
    let lines = service
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let n = v.points.len().max(2) - 1;
            let points: String = v
                .points
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    let y = metric.of(&p.golden)?;
                    Some(format!("{:.1},{:.1} ", j as f64 / n as f64 * W, H - (y / max).min(1.0) * H))
                })
                .collect();
            view! { <polyline class=format!("line seg{}", i % 4) points=points></polyline> }
        })
        .collect_view();
    view! {
        <figure class="chart" data-testid=format!("chart-{}", metric.title().replace([' ', '/', '%'], ""))>
            <figcaption>{metric.title()} <strong>{last.map_or("-".to_string(), |v| format!(" {v:.1}"))}</strong></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") width=W height=H>
                <line class="axis" x1="0" y1=H x2=W y2=H></line>
                {lines}
            </svg>
        </figure>
    }
}
