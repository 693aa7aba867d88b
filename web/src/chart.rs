//! Time charts a person can read, rendered on the server as SVG: a time axis, a value axis
//! with its unit, a legend, labelled threshold lines, the values under the pointer (once
//! hydrated), a text alternative for screen readers, and an empty state that says why there
//! is nothing to draw.

use crate::components::escape;
use leptos::prelude::*;

const W: f64 = 320.0;
const H: f64 = 150.0;
/// Room for the value labels on the left and the times below.
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 20.0;

/// One line: a version, or the canary.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    /// Unix milliseconds and the value then (none: nothing to measure in that step).
    pub values: Vec<(u64, Option<f64>)>,
    /// A CSS class for each point's dot (an analysis's verdict); empty for none.
    pub marks: Vec<&'static str>,
}

/// A line across the chart at `value`, labelled (e.g. "min 90 %").
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub value: f64,
    pub label: String,
}

/// Evenly spaced round values covering `lo..=hi`, about `n` of them: 0, 2, 4 or 0, 250, 500.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A value as its axis label: no more digits than the step between labels needs.
pub fn label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step <= 0.0 { 0 } else { (-step.log10()).ceil() as usize };
    format!("{v:.decimals$}")
}

/// `HH:MM` (UTC, as every time on the dashboard), with seconds over a span under 3 minutes.
pub fn clock(ms: u64, span_ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    if span_ms < 180_000 { format!("{h:02}:{m:02}:{sec:02}") } else { format!("{h:02}:{m:02}") }
}

/// What a reader hears instead of the picture: per line, the latest value and the range.
pub fn summary(title: &str, unit: &str, series: &[Series]) -> String {
    let parts: Vec<String> = series
        .iter()
        .map(|s| {
            let vals: Vec<f64> = s.values.iter().filter_map(|(_, v)| *v).collect();
            match vals.last() {
                None => format!("{}: no data", s.label),
                Some(last) => {
                    let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
                    format!("{}: latest {last:.1} {unit} (from {lo:.1} to {hi:.1})", s.label)
                }
            }
        })
        .collect();
    format!("{title}. {}", parts.join("; "))
}

/// Where the chart's values land: the plot's frame for a time span and a value range.
#[derive(Clone, Copy)]
struct Frame {
    t0: u64,
    span: u64,
    lo: f64,
    hi: f64,
}

impl Frame {
    const PW: f64 = W - LEFT - RIGHT;
    const PH: f64 = H - TOP - BOTTOM;

    fn x(&self, t: u64) -> f64 {
        LEFT + t.saturating_sub(self.t0) as f64 / self.span as f64 * Self::PW
    }

    fn y(&self, v: f64) -> f64 {
        TOP + Self::PH - ((v - self.lo) / (self.hi - self.lo).max(1e-9)).clamp(0.0, 1.0) * Self::PH
    }

    /// The frame that holds every value and threshold: `range` when fixed, else from zero (or
    /// the lowest value below it) to a little above the highest.
    fn fit(series: &[Series], thresholds: &[Threshold], range: Option<(f64, f64)>) -> Frame {
        let times = || series.iter().flat_map(|s| s.values.iter().map(|(t, _)| *t));
        let t0 = times().min().unwrap_or(0);
        let span = (times().max().unwrap_or(0) - t0).max(1);
        let (lo, hi) = range.unwrap_or_else(|| {
            let values = || series.iter().flat_map(|s| s.values.iter().filter_map(|(_, v)| *v));
            let top = values().chain(thresholds.iter().map(|t| t.value)).fold(0.0f64, f64::max);
            (values().fold(0.0f64, f64::min), if top > 0.0 { top * 1.15 } else { 1.0 })
        });
        Frame { t0, span, lo, hi }
    }
}

/// The chart's picture as SVG markup: value grid and labels, time labels, thresholds with
/// their labels, a line per series and its dots. Static, so it is one string for the page
/// rather than a view for the browser to hydrate piece by piece.
fn picture(frame: &Frame, series: &[Series], thresholds: &[Threshold]) -> String {
    use std::fmt::Write;
    let mut svg = String::new();
    let marks = ticks(frame.lo, frame.hi, 3);
    let step = marks.windows(2).next().map_or(1.0, |w| w[1] - w[0]);
    for v in &marks {
        let y = frame.y(*v);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}"></line><text class="tick" x="{tx}" y="{y:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
            label(*v, step),
            x2 = W - RIGHT,
            tx = LEFT - 4.0,
        );
    }
    let base = TOP + Frame::PH;
    let _ = write!(svg, r#"<line class="axis" x1="{LEFT}" y1="{base}" x2="{}" y2="{base}"></line>"#, W - RIGHT);
    for i in 0..=3u64 {
        let t = frame.t0 + frame.span * i / 3;
        let anchor = ["start", "middle", "middle", "end"][i as usize];
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            frame.x(t),
            H - 6.0,
            clock(t, frame.span)
        );
    }
    for t in thresholds {
        let y = frame.y(t.value);
        let _ = write!(
            svg,
            r#"<line class="threshold" x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}"></line><text class="threshold-label" x="{tx}" y="{:.1}" text-anchor="end">{}</text>"#,
            y - 3.0,
            escape(&t.label),
            x2 = W - RIGHT,
            tx = W - RIGHT - 2.0,
        );
    }
    let _ = write!(svg, r#"<line class="guide" visibility="hidden" x1="0" y1="{TOP}" x2="0" y2="{base}"></line>"#);
    for (i, s) in series.iter().enumerate() {
        let points: String =
            s.values.iter().filter_map(|(t, v)| v.map(|v| format!("{:.1},{:.1} ", frame.x(*t), frame.y(v)))).collect();
        let _ = write!(svg, r#"<polyline class="line seg{}" points="{points}"></polyline>"#, i % 4);
        for ((t, v), class) in s.values.iter().zip(&s.marks) {
            if let Some(v) = v {
                let _ = write!(
                    svg,
                    r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="3"></circle>"#,
                    frame.x(*t),
                    frame.y(*v)
                );
            }
        }
    }
    svg
}

/// A chart as markup alone, for a part of a page rendered once on the server: the same
/// picture, legend and words for screen readers, without the pointer's readout.
#[cfg(feature = "ssr")]
pub fn markup(testid: &str, title: &str, unit: &str, series: &[Series], range: Option<(f64, f64)>) -> String {
    let frame = Frame::fit(series, &[], range);
    let legend: String = series
        .iter()
        .enumerate()
        .map(|(i, s)| format!(r#"<span class="legend seg{}">{}</span>"#, i % 4, escape(&s.label)))
        .collect();
    format!(
        r#"<figure class="chart" data-testid="{}"><figcaption>{}</figcaption><svg viewBox="0 0 {W} {H}" role="img" aria-label="{}">{}</svg><div class="chart-foot">{legend}<span class="unit muted">{}</span></div></figure>"#,
        escape(testid),
        escape(title),
        escape(&summary(title, unit, series)),
        picture(&frame, series, &[]),
        escape(unit),
    )
}

/// What the pointer is over: the time of the nearest step and each line's value then.
fn reading(series: &[Series], t: u64, unit: &str) -> String {
    let values: Vec<String> = series
        .iter()
        .map(|s| {
            let v = s.values.iter().find(|(at, _)| *at == t).and_then(|(_, v)| *v);
            format!("{} {}", s.label, v.map_or("-".to_string(), |v| format!("{v:.1} {unit}")))
        })
        .collect();
    format!("{} UTC · {}", clock(t, 0), values.join(" · "))
}

/// The time chart. `range` fixes the value axis (0-100 for a percentage).
#[component]
pub fn TimeChart(
    testid: String,
    title: String,
    /// The unit after each value: `req/s`, `%`, `ms`.
    unit: &'static str,
    series: Vec<Series>,
    #[prop(optional)] thresholds: Vec<Threshold>,
    range: Option<(f64, f64)>,
    /// Said in place of the chart when no line has a value, with the reason.
    empty: String,
    /// The figure beside the title, and what it covers.
    headline: Option<(String, String)>,
) -> impl IntoView {
    // Static text: markup, not a view for the browser to hydrate.
    let mut caption = escape(&title);
    if let Some((value, over)) = headline {
        caption.push_str(&format!(
            r#" <strong data-testid="chart-headline">{}</strong> <small class="muted">{}</small>"#,
            escape(&value),
            escape(&over)
        ));
    }
    if series.iter().all(|s| s.values.iter().all(|(_, v)| v.is_none())) {
        let html = format!(
            r#"<figcaption>{caption}</figcaption><p class="chart-empty muted" data-testid="chart-empty">{}</p>"#,
            escape(&empty)
        );
        return view! { <figure class="chart" data-testid=testid inner_html=html></figure> }.into_any();
    }
    let frame = Frame::fit(&series, &thresholds, range);
    let body = picture(&frame, &series, &thresholds);
    let alt = summary(&title, unit, &series);
    let legend: String = series
        .iter()
        .enumerate()
        .map(|(i, s)| format!(r#"<span class="legend seg{}">{}</span>"#, i % 4, escape(&s.label)))
        .collect();
    let mut steps: Vec<u64> = series.iter().flat_map(|s| s.values.iter().map(|(t, _)| *t)).collect();
    steps.sort_unstable();
    steps.dedup();
    // What the pointer reads at each step, where the step is drawn.
    let readings: Vec<(f64, String)> = steps.iter().map(|t| (frame.x(*t), reading(&series, *t, unit))).collect();
    let on_move = move |ev: leptos::ev::MouseEvent| point_at(&ev, &readings);
    view! {
        <figure class="chart" data-testid=testid>
            <figcaption inner_html=caption></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=alt on:mousemove=on_move on:mouseleave=|ev| point_at(&ev, &[])>
                <g inner_html=body></g>
            </svg>
            <div class="chart-foot">
                <span class="legend-items" inner_html=legend></span>
                <span class="unit muted">{unit}</span>
                <output class="readout" data-testid="chart-readout"></output>
            </div>
        </figure>
    }
    .into_any()
}

/// Moves the chart's guide to the step nearest the pointer and reads its values out under
/// the chart; with no readings, hides both. Done on the two elements directly: a reactive
/// view for them would cost every page's download more than the rest of the chart.
#[cfg(feature = "hydrate")]
fn point_at(ev: &leptos::ev::MouseEvent, readings: &[(f64, String)]) {
    use leptos::wasm_bindgen::JsCast;
    let Some(svg) = ev.current_target().and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok()) else { return };
    // The SVG scales with its box: the pointer in the picture's own units.
    let rect = svg.get_bounding_client_rect();
    let x = if rect.width() > 0.0 { (f64::from(ev.client_x()) - rect.left()) / rect.width() * W } else { 0.0 };
    let nearest = readings.iter().min_by(|a, b| (a.0 - x).abs().total_cmp(&(b.0 - x).abs()));
    if let Ok(Some(guide)) = svg.query_selector(".guide") {
        let _ = guide.set_attribute("visibility", if nearest.is_some() { "visible" } else { "hidden" });
        if let Some((at, _)) = nearest {
            let _ = guide.set_attribute("x1", &format!("{at:.1}"));
            let _ = guide.set_attribute("x2", &format!("{at:.1}"));
        }
    }
    if let Some(Ok(Some(out))) = svg.parent_element().map(|figure| figure.query_selector(".readout")) {
        out.set_text_content(nearest.map(|(_, text)| text.as_str()));
    }
}

/// On the server nothing points.
#[cfg(not(feature = "hydrate"))]
fn point_at(_: &leptos::ev::MouseEvent, _: &[(f64, String)]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 3), vec![0.0, 5.0, 10.0]);
        assert_eq!(ticks(0.0, 4.6, 3), vec![0.0, 2.0, 4.0]);
        assert_eq!(ticks(0.0, 575.0, 3), vec![0.0, 200.0, 400.0]);
        assert_eq!(ticks(88.0, 100.0, 3), vec![90.0, 95.0, 100.0]);
        let small: Vec<String> = ticks(0.0, 0.06, 3).iter().map(|v| label(*v, 0.02)).collect();
        assert_eq!(small, ["0.00", "0.02", "0.04", "0.06"]);
        assert_eq!(ticks(5.0, 5.0, 3), vec![5.0], "a flat range still gets its value");
    }

    #[test]
    fn labels_carry_the_digits_their_step_needs_and_clocks_their_span() {
        assert_eq!(label(200.0, 200.0), "200");
        assert_eq!(label(0.04, 0.02), "0.04");
        assert_eq!(label(2.5, 0.5), "2.5");
        let noon = 12 * 3_600_000 + 3 * 60_000 + 9_000;
        assert_eq!(clock(noon, 900_000), "12:03");
        assert_eq!(clock(noon, 60_000), "12:03:09");
    }

    #[test]
    fn the_picture_places_values_on_their_axes_and_escapes_labels() {
        let series = vec![Series {
            label: "v1".into(),
            values: vec![(0, Some(0.0)), (300_000, Some(10.0)), (600_000, None)],
            marks: vec!["pass", "fail", "pass"],
        }];
        let limit = [Threshold { value: 5.0, label: "max <5>".into() }];
        let frame = Frame::fit(&series, &limit, None);
        assert_eq!((frame.lo, frame.hi), (0.0, 11.5), "a little room above the highest value");
        let svg = picture(&frame, &series, &limit);
        let base = TOP + Frame::PH;
        assert!(
            svg.contains(&format!(
                r#"points="{LEFT:.1},{base:.1} {:.1},{:.1} ""#,
                LEFT + Frame::PW / 2.0,
                frame.y(10.0)
            )),
            "{svg}"
        );
        assert_eq!(svg.matches("<circle").count(), 2, "no dot where nothing was measured");
        assert!(svg.contains(">max &lt;5&gt;</text>"), "{svg}");
        assert!(svg.contains(">00:00</text>") && svg.contains(">00:10</text>"), "{svg}");
        assert_eq!(reading(&series, 600_000, "ms"), "00:10:00 UTC · v1 -");
        assert_eq!(reading(&series, 300_000, "ms"), "00:05:00 UTC · v1 10.0 ms");
    }

    #[test]
    fn the_text_alternative_names_each_line_with_its_latest_value_and_range() {
        let s = |label: &str, values: Vec<Option<f64>>| Series {
            label: label.into(),
            values: values.into_iter().enumerate().map(|(i, v)| (i as u64 * 1000, v)).collect(),
            marks: Vec::new(),
        };
        let text = summary("requests / s", "req/s", &[s("v1", vec![Some(3.0), Some(4.3)]), s("v2", vec![None])]);
        assert_eq!(text, "requests / s. v1: latest 4.3 req/s (from 3.0 to 4.3); v2: no data");
    }
}
