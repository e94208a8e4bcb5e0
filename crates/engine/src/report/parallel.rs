//! The parallel-coordinates view of an adaptive sweep (inline SVG, in the style of
//! [`super::charts`]): one vertical axis per searched param (and the halving budget), the
//! objective last, and one line per trial through its values, coloured from the worst objective
//! (grey-blue) to the best (red); the best trial is drawn bold, stopped and unfinished trials
//! faint. Numeric axes are linear, or logarithmic when every value is positive and they span more
//! than a decade; other values (strings, lists) are spread evenly in first-seen order.

use std::fmt::Write as _;

use super::charts::{open_svg, tick_label};
use super::html::esc;
use super::SweepSummary;
use crate::config::sweep::display_value;

const AXIS_GAP: f64 = 120.0;
const LEFT: f64 = 50.0;
const TOP: f64 = 44.0;
const PLOT_H: f64 = 200.0;
const BOTTOM: f64 = 40.0;

/// One vertical axis: its label and where each trial sits on it (0 = bottom, 1 = top), with the
/// tick labels to print.
struct Axis {
    label: String,
    positions: Vec<Option<f64>>,
    ticks: Vec<(f64, String)>,
}

fn numeric_axis(label: String, values: &[Option<f64>]) -> Axis {
    let finite: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log = lo > 0.0 && hi / lo > 10.0;
    let f = |v: f64| if log { v.log10() } else { v };
    let (a, b) = (f(lo), f(hi));
    let pos = |v: f64| {
        if b > a {
            (f(v) - a) / (b - a)
        } else {
            0.5
        }
    };
    let ticks = if finite.is_empty() {
        Vec::new()
    } else if b > a {
        vec![(0.0, tick_label(lo)), (1.0, tick_label(hi))]
    } else {
        vec![(0.5, tick_label(lo))]
    };
    Axis {
        label: if log { format!("{label} (log)") } else { label },
        positions: values
            .iter()
            .map(|v| v.filter(|x| x.is_finite()).map(pos))
            .collect(),
        ticks,
    }
}

fn category_axis(label: String, values: &[Option<String>]) -> Axis {
    let mut seen: Vec<String> = Vec::new();
    for v in values.iter().flatten() {
        if !seen.contains(v) {
            seen.push(v.clone());
        }
    }
    let pos = |i: usize| {
        if seen.len() > 1 {
            i as f64 / (seen.len() - 1) as f64
        } else {
            0.5
        }
    };
    Axis {
        label,
        positions: values
            .iter()
            .map(|v| {
                v.as_ref()
                    .and_then(|v| seen.iter().position(|s| s == v))
                    .map(pos)
            })
            .collect(),
        ticks: seen
            .iter()
            .enumerate()
            .map(|(i, s)| (pos(i), s.chars().take(18).collect()))
            .collect(),
    }
}

/// A colour between `#6b8fb5` (t = 0, worst) and `#d62728` (t = 1, best).
fn ramp(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(107.0, 214.0),
        mix(143.0, 39.0),
        mix(181.0, 40.0)
    )
}

/// The objective value of each variant (from its objective stage's `metrics.json`).
pub fn objective_values(summary: &SweepSummary) -> Vec<Option<f64>> {
    let Some((stage, metric)) = summary.objective.as_ref().and_then(|o| o.split_once('.')) else {
        return vec![None; summary.variants.len()];
    };
    summary
        .variants
        .iter()
        .map(|v| {
            v.stages
                .iter()
                .find(|s| s.stage == stage)
                .and_then(|s| s.metrics.get(metric))
                .and_then(serde_json::Value::as_f64)
        })
        .collect()
}

/// The chart, or "" when the sweep is not adaptive or no trial has an objective yet.
pub fn parallel_coordinates(summary: &SweepSummary) -> String {
    let Some(objective) = &summary.objective else {
        return String::new();
    };
    let scores = objective_values(summary);
    if scores.iter().all(Option::is_none) {
        return String::new();
    }
    let max = summary.goal.as_deref() != Some("min");
    let mut axes: Vec<Axis> = summary
        .axes
        .iter()
        .map(|a| {
            let values: Vec<Option<&serde_json::Value>> = summary
                .variants
                .iter()
                .map(|v| v.values.get(&a.path))
                .collect();
            if values.iter().flatten().all(|v| v.is_number()) {
                let nums: Vec<Option<f64>> =
                    values.iter().map(|v| v.and_then(|x| x.as_f64())).collect();
                numeric_axis(a.label.clone(), &nums)
            } else {
                let cats: Vec<Option<String>> = values
                    .iter()
                    .map(|v| v.map(|x| display_value(x, "+")))
                    .collect();
                category_axis(a.label.clone(), &cats)
            }
        })
        .collect();
    let goal = if max { "max" } else { "min" };
    axes.push(numeric_axis(format!("{objective} ({goal})"), &scores));
    let best = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .reduce(|a, b| {
            if (max && b.1 > a.1) || (!max && b.1 < a.1) {
                b
            } else {
                a
            }
        })
        .map(|(i, _)| i);

    let width = LEFT * 2.0 + AXIS_GAP * (axes.len() - 1) as f64;
    let height = TOP + PLOT_H + BOTTOM;
    let title = format!("Trials: params against {objective}");
    let mut s = open_svg(width, height, &title);
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"16\" font-weight=\"bold\">{}</text>",
        esc(&title)
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"30\" fill=\"#555\" font-size=\"11\">one line per trial; red = better {}, bold = best; faint = stopped or unfinished</text>",
        esc(objective)
    );
    let x = |k: usize| LEFT + AXIS_GAP * k as f64;
    let y = |p: f64| TOP + (1.0 - p) * PLOT_H;
    let objective_axis = axes.len() - 1;
    // Lines first (worst first so the best are on top), then the axes over them.
    let mut order: Vec<usize> = (0..summary.variants.len()).collect();
    order.sort_by(|&a, &b| {
        let pa = axes[objective_axis].positions[a].unwrap_or(-1.0);
        let pb = axes[objective_axis].positions[b].unwrap_or(-1.0);
        let (pa, pb) = if max { (pa, pb) } else { (-pa, -pb) };
        pa.total_cmp(&pb)
    });
    for &v in &order {
        let points: Vec<(f64, f64)> = axes
            .iter()
            .enumerate()
            .filter_map(|(k, a)| a.positions[v].map(|p| (x(k), y(p))))
            .collect();
        if points.len() < 2 {
            continue;
        }
        let t = axes[objective_axis].positions[v].map_or(0.0, |p| if max { p } else { 1.0 - p });
        let faint = summary.variants[v].stop_reason.is_some() || scores[v].is_none();
        let (w, opacity) = if Some(v) == best {
            (3.0, 1.0)
        } else if faint {
            (1.0, 0.35)
        } else {
            (1.5, 0.8)
        };
        let mut d = String::new();
        for (i, (px, py)) in points.iter().enumerate() {
            let _ = write!(d, "{}{px:.1},{py:.1}", if i == 0 { "M" } else { " L" });
        }
        let _ = writeln!(
            s,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{w}\" stroke-opacity=\"{opacity}\"><title>{}</title></path>",
            ramp(t),
            esc(&summary.variants[v].name)
        );
    }
    for (k, a) in axes.iter().enumerate() {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" stroke=\"#999\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(k),
            TOP + PLOT_H,
            TOP + PLOT_H + 18.0,
            esc(&a.label)
        );
        for (p, label) in &a.ticks {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\" font-size=\"10\">{}</text>",
                x(k) + 4.0,
                y(*p) + 3.0,
                esc(label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use crate::report::{AxisSummary, StageSummary, VariantSummary};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn variant(name: &str, x: f64, level: &str, score: f64, stopped: bool) -> VariantSummary {
        VariantSummary {
            name: name.into(),
            dir: "/r".into(),
            values: BTreeMap::from([
                ("stage.q.x".into(), json!(x)),
                ("stage.q.level".into(), json!(level)),
            ]),
            wall_time_s: 0.0,
            cache: "hit".into(),
            stages: vec![StageSummary {
                stage: "q".into(),
                kind: "quadratic".into(),
                key: "k".into(),
                dir: "/c".into(),
                link: "/l".into(),
                status: "hit".into(),
                shared: false,
                elapsed_s: None,
                compute_s: None,
                metrics: BTreeMap::from([("score".into(), json!(score))]),
            }],
            rung: None,
            origin: Some("random trial 0".into()),
            stop_reason: stopped.then(|| "rung 0: score 0.1 < cutoff 0.5, rank 2 of 2".into()),
        }
    }

    #[test]
    fn one_line_per_trial_through_each_axis_the_best_bold_and_red() {
        let summary = SweepSummary {
            format: 1,
            experiment: "e".into(),
            mode: "random".into(),
            created_at: String::new(),
            axes: vec![
                AxisSummary {
                    path: "stage.q.x".into(),
                    label: "x".into(),
                    values: vec![],
                },
                AxisSummary {
                    path: "stage.q.level".into(),
                    label: "level".into(),
                    values: vec![],
                },
            ],
            metrics: vec!["score".into()],
            variants: vec![
                variant("t000", 0.1, "plain", 0.2, true),
                variant("t001", 0.3, "best", 0.9, false),
                variant("t002", 0.9, "plain", 0.5, false),
            ],
            objective: Some("q.score".into()),
            goal: Some("max".into()),
        };
        let svg = parallel_coordinates(&summary);
        assert_eq!(svg.matches("<path ").count(), 3, "{svg}");
        // The best trial (t001) is last drawn, bold, in the best colour, and at the top of the
        // objective axis (y = TOP) and of the x axis' middle (0.3 of 0.1..0.9 → a quarter up).
        let best = svg
            .lines()
            .find(|l| l.contains("<title>t001</title>"))
            .unwrap();
        assert!(
            best.contains("stroke-width=\"3\"") && best.contains(&ramp(1.0)),
            "{best}"
        );
        assert!(
            best.contains(&format!("{:.1},{:.1}", LEFT + 2.0 * AXIS_GAP, TOP)),
            "{best}"
        );
        assert!(
            best.contains(&format!("M{LEFT:.1},{:.1}", TOP + 0.75 * PLOT_H)),
            "{best}"
        );
        let stopped = svg
            .lines()
            .find(|l| l.contains("<title>t000</title>"))
            .unwrap();
        assert!(stopped.contains("stroke-opacity=\"0.35\""), "{stopped}");
        assert!(
            svg.contains(">q.score (max)</text>") && svg.contains(">best</text>"),
            "{svg}"
        );
        // Not adaptive: no chart.
        let grid = SweepSummary {
            objective: None,
            ..summary
        };
        assert_eq!(parallel_coordinates(&grid), "");
    }
}
