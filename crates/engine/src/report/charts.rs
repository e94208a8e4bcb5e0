//! Inline SVG charts for `report.html`, drawn from the numbers stages wrote (no image library):
//! training curves (log scale, or the first tenth clipped, with a moving average), sorted
//! horizontal bars, and a family of lines (one per rendered face).

use std::fmt::Write as _;

const W: f64 = 440.0;
const H: f64 = 230.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 34.0;

/// Distinct colours for lines, in order.
const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// How a curve's y axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Log,
    /// Linear over the range of the values after the first tenth (earlier ones are drawn
    /// clipped at the top), so the start does not flatten the rest.
    ClipStart,
    Linear,
}

impl Scale {
    /// Log for positive values that span more than a decade, else the start clipped for losses
    /// and the plain range otherwise.
    pub fn for_series(values: &[f64], is_loss: bool) -> Scale {
        let (lo, hi) = range(values.iter().copied());
        if lo > 0.0 && hi / lo > 10.0 {
            Scale::Log
        } else if is_loss && values.len() >= 20 {
            Scale::ClipStart
        } else {
            Scale::Linear
        }
    }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// The trailing moving average over `window` values.
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for (i, v) in values.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= values[i - window];
        }
        out.push(sum / (i + 1).min(window) as f64);
    }
    out
}

/// "Nice" tick values (1, 2, 5 × 10^k) covering [lo, hi], about `n` of them.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// Labels for evenly spaced ticks: as many decimals as their spacing needs.
fn linear_labels(ticks: &[f64]) -> Vec<String> {
    let step = match ticks {
        [a, b, ..] => (b - a).abs(),
        _ => return ticks.iter().map(|t| tick_label(*t)).collect(),
    };
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let big = ticks.iter().any(|t| t.abs() >= 1e5);
    ticks
        .iter()
        .map(|&t| {
            if t == 0.0 {
                "0".to_owned()
            } else if big || decimals > 4 {
                format!("{t:.1e}")
            } else {
                format!("{t:.decimals$}")
            }
        })
        .collect()
}

/// A short label for a tick value.
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".to_owned()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn esc(s: &str) -> String {
    super::html::esc(s)
}

/// Maps data to the plot area.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    log: bool,
}

impl Frame {
    fn fy(&self, v: f64) -> f64 {
        if self.log {
            v.max(self.y0).log10()
        } else {
            v
        }
    }
    fn px(&self, x: f64) -> f64 {
        let span = (self.x1 - self.x0).max(f64::MIN_POSITIVE);
        LEFT + (x - self.x0) / span * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        let (a, b) = (self.fy(self.y0), self.fy(self.y1));
        let span = (b - a).max(f64::MIN_POSITIVE);
        let t = ((self.fy(y) - a) / span).clamp(-0.02, 1.02);
        H - BOTTOM - t * (H - TOP - BOTTOM)
    }

    fn axes(&self, s: &mut String, title: &str) {
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"16\" font-weight=\"bold\">{}</text>",
            esc(title)
        );
        let yticks: Vec<f64> = if self.log {
            let (a, b) = (
                self.y0.log10().floor() as i32,
                self.y1.log10().ceil() as i32,
            );
            let decades: Vec<f64> = (a..=b).map(|e| 10f64.powi(e)).collect();
            let inside: Vec<f64> = decades
                .iter()
                .copied()
                .filter(|v| (self.y0..=self.y1).contains(v))
                .collect();
            if inside.len() >= 2 {
                inside
            } else {
                decades
                    .iter()
                    .flat_map(|d| [*d, 2.0 * d, 5.0 * d])
                    .filter(|v| (self.y0..=self.y1).contains(v))
                    .collect()
            }
        } else {
            nice_ticks(self.y0, self.y1, 4)
        };
        let labels = if self.log {
            yticks.iter().map(|t| tick_label(*t)).collect()
        } else {
            linear_labels(&yticks)
        };
        for (t, label) in yticks.iter().zip(labels) {
            let y = self.py(*t);
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                W - RIGHT,
                LEFT - 4.0,
                y + 4.0,
                label
            );
        }
        let xticks = nice_ticks(self.x0, self.x1, 5);
        for (t, label) in xticks.iter().zip(linear_labels(&xticks)) {
            let x = self.px(*t);
            let _ = writeln!(
                s,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{label}</text>",
                H - BOTTOM + 15.0,
            );
        }
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#999\"/>",
            W - LEFT - RIGHT,
            H - TOP - BOTTOM
        );
    }
}

pub(super) fn open_svg(width: f64, height: f64, label: &str) -> String {
    format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\">\n",
        esc(label)
    )
}

fn polyline(s: &mut String, points: &[(f64, f64)], color: &str, width: f64, opacity: f64) {
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        let _ = write!(d, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
    }
    let _ = writeln!(
        s,
        "<path d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" stroke-opacity=\"{opacity}\"/>"
    );
}

/// At most `max` evenly spaced indices of `0..n` (always the last).
fn sample(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut idx: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    idx.dedup();
    idx
}

/// One training curve: `values[i]` at `steps[i]`, the raw values faint and their moving average
/// bold, on `scale`. The caption under it says the scale and the window.
pub fn curve(title: &str, steps: &[f64], values: &[f64], scale: Scale) -> String {
    let n = values.len().min(steps.len());
    if n == 0 {
        return String::new();
    }
    let (steps, values) = (&steps[..n], &values[..n]);
    let window = (n / 20).clamp(1, 500);
    let smooth = moving_average(values, window);
    let (x0, x1) = range(steps.iter().copied());
    let fit_from = if scale == Scale::ClipStart { n / 10 } else { 0 };
    let (mut y0, mut y1) = range(values[fit_from..].iter().copied());
    let log = scale == Scale::Log && y0 > 0.0;
    if log {
        y0 /= 1.15;
        y1 *= 1.15;
    } else {
        // A flat series (a constant learning rate) gets a visible band around its value.
        let pad = if y1 - y0 <= y1.abs() * 1e-3 {
            (y1.abs() * 0.1).max(1e-12)
        } else {
            (y1 - y0) * 0.06
        };
        y0 -= pad;
        y1 += pad;
    }
    let frame = Frame {
        x0,
        x1: if x1 > x0 { x1 } else { x0 + 1.0 },
        y0,
        y1,
        log,
    };
    let mut s = open_svg(W, H, title);
    frame.axes(&mut s, title);
    let pick = sample(n, 800);
    let raw: Vec<(f64, f64)> = pick
        .iter()
        .map(|&i| (frame.px(steps[i]), frame.py(values[i])))
        .collect();
    let avg: Vec<(f64, f64)> = pick
        .iter()
        .map(|&i| (frame.px(steps[i]), frame.py(smooth[i])))
        .collect();
    polyline(&mut s, &raw, PALETTE[0], 1.0, 0.35);
    polyline(&mut s, &avg, PALETTE[0], 2.0, 1.0);
    let how = match (log, scale) {
        (true, _) => "log scale".to_owned(),
        (false, Scale::ClipStart) => "first tenth clipped".to_owned(),
        _ => "linear".to_owned(),
    };
    let last = smooth.last().copied().unwrap_or(f64::NAN);
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"30\" fill=\"#555\" font-size=\"11\">{how}; moving average of {window}: last {}</text>",
        tick_label_precise(last)
    );
    s.push_str("</svg>\n");
    s
}

fn tick_label_precise(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

/// Horizontal bars, sorted by value (largest first), values in [0, 1]; a dashed line at
/// `reference` (e.g. the average) when given.
pub fn sorted_bars(title: &str, items: &[(String, f64)], reference: Option<f64>) -> String {
    let mut items: Vec<&(String, f64)> = items.iter().filter(|(_, v)| v.is_finite()).collect();
    items.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let row = 15.0;
    let label_w = 150.0;
    let bar_w = 300.0;
    let width = label_w + bar_w + 60.0;
    let height = TOP + row * items.len() as f64 + 24.0;
    let mut s = open_svg(width, height, title);
    let _ = writeln!(
        s,
        "<text x=\"4\" y=\"16\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    for (i, (name, v)) in items.iter().enumerate() {
        let y = TOP + row * i as f64;
        let w = v.clamp(0.0, 1.0) * bar_w;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{v:.3}</text>",
            label_w - 6.0,
            y + 11.0,
            esc(name),
            y + 2.0,
            row - 3.0,
            PALETTE[0],
            label_w + w + 4.0,
            y + 11.0,
        );
    }
    let axis_y = TOP + row * items.len() as f64 + 2.0;
    for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let x = label_w + t * bar_w;
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{axis_y:.1}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{t}</text>",
            axis_y + 13.0
        );
    }
    if let Some(r) = reference.filter(|r| r.is_finite()) {
        let x = label_w + r.clamp(0.0, 1.0) * bar_w;
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{axis_y:.1}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#d62728\">average {r:.3}</text>",
            TOP - 4.0,
            TOP - 8.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One line per series over shared x values (y in [0, 1]), plus their mean in black.
pub fn lines(title: &str, x_label: &str, xs: &[f64], series: &[Vec<f64>]) -> String {
    if xs.is_empty() || series.is_empty() {
        return String::new();
    }
    let (x0, x1) = range(xs.iter().copied());
    let frame = Frame {
        x0,
        x1: if x1 > x0 { x1 } else { x0 + 1.0 },
        y0: 0.0,
        y1: 1.0,
        log: false,
    };
    let mut s = open_svg(W, H + 12.0, title);
    frame.axes(&mut s, title);
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
        (LEFT + W - RIGHT) / 2.0,
        H + 6.0,
        esc(x_label)
    );
    for (k, ys) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = xs
            .iter()
            .zip(ys)
            .map(|(x, y)| (frame.px(*x), frame.py(*y)))
            .collect();
        polyline(&mut s, &pts, PALETTE[k % PALETTE.len()], 1.3, 0.8);
    }
    let mean: Vec<(f64, f64)> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let vals: Vec<f64> = series.iter().filter_map(|ys| ys.get(i).copied()).collect();
            let m = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
            (frame.px(*x), frame.py(m))
        })
        .collect();
    polyline(&mut s, &mean, "#000", 2.5, 1.0);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_trailing_and_starts_short() {
        assert_eq!(
            moving_average(&[1.0, 3.0, 5.0, 7.0], 2),
            [1.0, 2.0, 4.0, 6.0]
        );
        assert_eq!(moving_average(&[4.0], 10), [4.0]);
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = nice_ticks(0.0, 1.0, 5);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), want.len(), "{t:?}");
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9),
            "{t:?}"
        );
        let t = nice_ticks(3.0, 1603.0, 5);
        assert_eq!(t, [500.0, 1000.0, 1500.0]);
    }

    #[test]
    fn a_loss_spanning_decades_gets_a_log_scale_and_a_flat_one_clips_its_start() {
        let falling: Vec<f64> = (1..=100).map(|i| 1e5 / i as f64).collect();
        assert_eq!(Scale::for_series(&falling, true), Scale::Log);
        let mut flat: Vec<f64> = vec![50.0; 100];
        flat[0] = 400.0;
        assert_eq!(Scale::for_series(&flat, true), Scale::ClipStart);
        assert_eq!(Scale::for_series(&[0.1, 0.9], false), Scale::Linear);
    }

    #[test]
    fn a_clipped_curve_spends_its_height_on_the_late_values() {
        let mut values = vec![100.0; 100];
        values[0] = 10_000.0;
        values[99] = 50.0;
        let steps: Vec<f64> = (1..=100).map(f64::from).collect();
        let svg = curve("loss", &steps, &values, Scale::ClipStart);
        // Ticks come from the late range (50..100), not from the first value.
        assert!(svg.contains(">60<") || svg.contains(">80<"), "{svg}");
        assert!(!svg.contains(">10000<"), "{svg}");
    }

    #[test]
    fn bars_are_sorted_largest_first() {
        let items = vec![("low".to_owned(), 0.2), ("high".to_owned(), 0.9)];
        let svg = sorted_bars("acc", &items, Some(0.55));
        let (hi, lo) = (svg.find(">high<").unwrap(), svg.find(">low<").unwrap());
        assert!(hi < lo);
        assert!(svg.contains("average 0.550"));
    }
}
