//! Charts of what a gate judged, drawn as SVG by the host: the points of
//! the window it read (canary, and baseline where it compared them), the
//! threshold and the observed aggregate, and for a comparison the two
//! distributions side by side.
//!
//! Drawn here rather than by a charting library in the browser, so the web
//! view ships no third-party code and anything that can show an image can
//! show the same chart. Only presentation attributes are used (no `style`),
//! which a strict Content-Security-Policy allows, and every text is
//! XML-escaped.

use std::fmt::Write as _;

use crate::evaluate::charts::Chart;
use crate::snapshot::Point;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;
/// Width of the distribution panel beside a comparison.
const DIST: f64 = 150.0;

const CANARY: &str = "#2563eb";
const BASELINE: &str = "#f97316";
const THRESHOLD: &str = "#dc2626";
const OBSERVED: &str = "#16a34a";
const INK: &str = "#374151";
const GRID: &str = "#e5e7eb";

/// Characters of a name a chart shows at most.
const MAX_LABEL: usize = 120;

/// `s` safe inside XML text and attribute values: control characters
/// shown as escapes, noncharacters (which an XML parser refuses, and so
/// would hide the chart) replaced, at most [`MAX_LABEL`] characters.
fn xml(s: &str) -> String {
    let shown = crate::base::text::escape_control(s);
    let mut kept: String = shown
        .chars()
        .take(MAX_LABEL)
        .map(|c| {
            let n = u32::from(c);
            if (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    if shown.chars().nth(MAX_LABEL).is_some() {
        kept.push('…');
    }
    quick_xml::escape::escape(kept.as_str()).into_owned()
}

/// A number for an axis label: at most four significant digits.
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..7).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    let decimals = usize::try_from((3 - magnitude).clamp(0, 8)).unwrap_or(0);
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn clock(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t).map_or_else(
        |_| t.to_string(),
        |at| format!("{:02}:{:02}", at.hour(), at.minute()),
    )
}

/// Linear scale from `[lo, hi]` onto `[a, b]`.
fn scale(v: f64, lo: f64, hi: f64, a: f64, b: f64) -> f64 {
    if hi <= lo {
        return (a + b) / 2.0;
    }
    a + (v - lo) / (hi - lo) * (b - a)
}

/// Quartiles of `values`: min, q1, median, q3, max.
fn five(values: &[f64]) -> Option<[f64; 5]> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (i, f) = (pos.floor() as usize, pos.fract());
        let next = v[(i + 1).min(v.len() - 1)];
        v[i] + (next - v[i]) * f
    };
    Some([v[0], at(0.25), at(0.5), at(0.75), v[v.len() - 1]])
}

/// One chart as a standalone SVG document.
pub fn chart(c: &Chart) -> String {
    let compare = !c.current.is_empty() && !c.baseline.is_empty();
    let width = if compare { WIDTH + DIST } else { WIDTH };
    let plot_right = WIDTH - RIGHT;
    let mut values: Vec<f64> = c
        .current
        .iter()
        .chain(&c.baseline)
        .map(|p| p.value)
        .collect();
    values.extend(c.threshold);
    values.extend(c.observed);
    let mut lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < f64::EPSILON * hi.abs().max(1.0) {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        (lo, hi) = (lo - pad, hi + pad);
    } else {
        let pad = (hi - lo) * 0.08;
        (lo, hi) = (lo - pad, hi + pad);
    }
    let t_end = c.taken_at;
    let t_start = match c.window_seconds {
        Some(w) => t_end.saturating_sub(i64::try_from(w).unwrap_or(i64::MAX)),
        None => c
            .current
            .iter()
            .chain(&c.baseline)
            .map(|p| p.timestamp)
            .min()
            .unwrap_or_else(|| t_end.saturating_sub(60)),
    };
    let t_start = t_start.min(t_end.saturating_sub(1));
    let x = |t: i64| scale(t as f64, t_start as f64, t_end as f64, LEFT, plot_right);
    let y = |v: f64| scale(v, lo, hi, HEIGHT - BOTTOM, TOP);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {HEIGHT}" width="{width}" height="{HEIGHT}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="11">"#,
        xml(&format!("{}: {}", c.gate, c.metric))
    );
    let _ = write!(
        s,
        r#"<title>{}</title><text x="{LEFT}" y="16" fill="{INK}" font-size="13" font-weight="600">{}</text>"#,
        xml(&format!("{}: {}", c.gate, c.metric)),
        xml(&format!(
            "{}{}",
            c.metric,
            c.window_seconds
                .map(|w| format!(
                    " over {}",
                    humantime::format_duration(std::time::Duration::from_secs(w))
                ))
                .unwrap_or_default()
        ))
    );
    // Grid and axis labels: four bands of values, start and end of time.
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{plot_right}" y1="{yy:.1}" y2="{yy:.1}" stroke="{GRID}"/><text x="{}" y="{:.1}" text-anchor="end" fill="{INK}">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            xml(&short(v))
        );
    }
    let base = HEIGHT - BOTTOM;
    let _ = write!(
        s,
        r#"<line x1="{LEFT}" x2="{plot_right}" y1="{base}" y2="{base}" stroke="{INK}"/><text x="{LEFT}" y="{}" fill="{INK}">{}</text><text x="{plot_right}" y="{}" text-anchor="end" fill="{INK}">{} UTC</text>"#,
        base + 16.0,
        clock(t_start),
        base + 16.0,
        clock(t_end)
    );
    let mut series = |points: &[Point], colour: &str, class: &str| {
        if points.is_empty() {
            return;
        }
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.timestamp), y(p.value)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="{class}" points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        if points.len() <= 120 {
            for p in points {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{} {}</title></circle>"#,
                    x(p.timestamp),
                    y(p.value),
                    clock(p.timestamp),
                    xml(&short(p.value))
                );
            }
        }
    };
    series(&c.baseline, BASELINE, "baseline");
    series(&c.current, CANARY, "canary");
    let mut rule = |v: Option<f64>, colour: &str, class: &str, name: &str| {
        if let Some(v) = v {
            let yy = y(v);
            let _ = write!(
                s,
                r#"<line class="{class}" x1="{LEFT}" x2="{plot_right}" y1="{yy:.1}" y2="{yy:.1}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="{colour}">{name} {}</text>"#,
                plot_right - 2.0,
                yy - 4.0,
                xml(&short(v))
            );
        }
    };
    rule(c.threshold, THRESHOLD, "threshold", "threshold");
    rule(c.observed, OBSERVED, "observed", "observed");
    // The legend, bottom right.
    let mut legend = vec![(CANARY, "canary")];
    if !c.baseline.is_empty() {
        legend.push((BASELINE, "baseline"));
    }
    let mut lx = LEFT + 70.0;
    for (colour, name) in legend {
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{}" width="10" height="3" fill="{colour}"/><text x="{}" y="{}" fill="{INK}">{name}</text>"#,
            base + 13.0,
            lx + 14.0,
            base + 17.0
        );
        lx += 80.0;
    }
    if compare {
        distributions(&mut s, c, lo, hi);
    }
    s.push_str("</svg>");
    s
}

/// Canary and baseline values as two box plots sharing the chart's scale:
/// how the canary judge's samples compare, whatever their times.
fn distributions(s: &mut String, c: &Chart, lo: f64, hi: f64) {
    let y = |v: f64| scale(v, lo, hi, HEIGHT - BOTTOM, TOP);
    let left = WIDTH + 10.0;
    let _ = write!(
        s,
        r#"<text class="distribution" x="{left}" y="16" fill="{INK}" font-size="12">distributions</text>"#
    );
    for (i, (points, colour, name)) in [
        (&c.baseline, BASELINE, "baseline"),
        (&c.current, CANARY, "canary"),
    ]
    .into_iter()
    .enumerate()
    {
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        let Some([min, q1, median, q3, max]) = five(&values) else {
            continue;
        };
        let cx = left + 30.0 + 65.0 * i as f64;
        let _ = write!(
            s,
            r#"<g class="box {name}"><line x1="{cx}" x2="{cx}" y1="{:.1}" y2="{:.1}" stroke="{colour}"/><rect x="{}" y="{:.1}" width="30" height="{:.1}" fill="white" stroke="{colour}" stroke-width="2"/><line x1="{}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/><text x="{cx}" y="{}" text-anchor="middle" fill="{INK}">{name}</text><title>{name}: min {} q1 {} median {} q3 {} max {} ({} points)</title></g>"#,
            y(max),
            y(min),
            cx - 15.0,
            y(q3),
            (y(q1) - y(q3)).max(1.0),
            cx - 15.0,
            cx + 15.0,
            y(median),
            y(median),
            HEIGHT - BOTTOM + 16.0,
            xml(&short(min)),
            xml(&short(q1)),
            xml(&short(median)),
            xml(&short(q3)),
            xml(&short(max)),
            values.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::decision::Verdict;

    fn points(n: i64, base: f64) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                timestamp: 1000 + i * 60,
                value: base + (i % 3) as f64,
            })
            .collect()
    }

    #[test]
    fn a_comparison_draws_both_series_the_rules_and_two_box_plots() {
        let c = Chart {
            gate: "latency <&> \"x\"".into(),
            verdict: Verdict::Fail,
            metric: "p95</title><script>alert(1)</script>".into(),
            window_seconds: Some(600),
            taken_at: 1600,
            current: points(10, 300.0),
            baseline: points(10, 250.0),
            observed: Some(301.0),
            threshold: Some(275.0),
            thinned: false,
        };
        let svg = chart(&c);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(r#"class="threshold""#) && svg.contains(r#"class="observed""#));
        assert_eq!(svg.matches(r#"<g class="box"#).count(), 2);
    }

    #[test]
    fn flat_or_empty_series_still_draw_inside_the_frame() {
        let flat = Chart {
            gate: "g".into(),
            verdict: Verdict::Pass,
            metric: "m".into(),
            window_seconds: None,
            taken_at: 1000,
            current: vec![Point {
                timestamp: 1000,
                value: 0.0,
            }],
            baseline: Vec::new(),
            observed: None,
            threshold: None,
            thinned: false,
        };
        let svg = chart(&flat);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let empty = Chart {
            current: Vec::new(),
            ..flat
        };
        assert!(!chart(&empty).contains("NaN"));
    }
}
