//! The parts of `report.html` that answer "did it work?", each read from the files a stage
//! wrote, so any kind that writes the same files gets the same section:
//!
//! - `metrics.jsonl` (one JSON object per step): a curve per loss, accuracy and learning rate;
//! - `original_N.png` beside `reconstructed_N.png`: the first and last save side by side;
//! - `metrics.json` with `probe_accuracy` (attribute → accuracy): sorted bars;
//! - `metrics.json` with `probability_per_face` and `amounts`: one line per face, and
//!   `share_rising` in words.
//!
//! [`verdict`] gathers one sentence per stage for the top of the page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::charts::{self, Scale};
use super::html::{esc, zoomable};

/// The numeric series of a `metrics.jsonl`: field → (steps, values), in file order.
pub type Series = BTreeMap<String, (Vec<f64>, Vec<f64>)>;

/// Fields of `metrics.jsonl` not worth a chart.
const NOT_CHARTED: &[&str] = &["step", "step_ms", "data_wait_ms"];

/// Reads `dir/metrics.jsonl`; `None` when there is none. Unparsable lines (a torn last line of a
/// running stage) are skipped.
pub fn read_series(dir: &Path) -> Option<Series> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    let mut series = Series::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let step = map
            .get("step")
            .and_then(Value::as_f64)
            .unwrap_or((i + 1) as f64);
        for (k, v) in &map {
            if let Some(v) = v.as_f64() {
                let entry = series.entry(k.clone()).or_default();
                entry.0.push(step);
                entry.1.push(v);
            }
        }
    }
    Some(series)
}

fn is_loss(name: &str) -> bool {
    name.ends_with("loss") || name == "cross_entropy"
}

/// The training curves of one stage: losses first, then the rest.
pub fn training(series: &Series) -> String {
    let mut names: Vec<&String> = series
        .keys()
        .filter(|k| !NOT_CHARTED.contains(&k.as_str()))
        .collect();
    names.sort_by_key(|n| (!is_loss(n), n.as_str() != "total_loss", n.as_str()));
    let mut h = String::from("<div class=\"charts\">");
    for name in names {
        let (steps, values) = &series[name];
        let scale = if is_loss(name) {
            Scale::for_series(values, true)
        } else {
            Scale::Linear
        };
        h.push_str(&charts::curve(name, steps, values, scale));
    }
    h.push_str("</div>\n");
    h
}

/// The saved steps that have both grids (`original_N.png`, `reconstructed_N.png`), or only the
/// reconstruction (entries written before the originals were saved), ascending.
pub fn saved_grids(dir: &Path) -> Vec<(u64, Option<PathBuf>, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("reconstructed_")?
                .strip_suffix(".png")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    steps
        .into_iter()
        .map(|s| {
            let original = dir.join(format!("original_{s:06}.png"));
            (
                s,
                original.is_file().then_some(original),
                dir.join(format!("reconstructed_{s:06}.png")),
            )
        })
        .collect()
}

/// Originals next to their reconstructions, for the last save and the first.
pub fn reconstructions(stage: &str, dir: &Path) -> String {
    let grids = saved_grids(dir);
    let mut shown: Vec<&(u64, Option<PathBuf>, PathBuf)> = grids.iter().rev().take(1).collect();
    if grids.len() > 1 {
        shown.extend(grids.first());
    }
    let mut h = String::new();
    for (step, original, reconstructed) in shown {
        let _ = write!(h, "<div class=\"pair\">");
        match original {
            Some(o) => zoomable(&mut h, &format!("{stage}: originals, step {step}"), o),
            None => {
                let _ = write!(
                    h,
                    "<p class=\"sub\">(this entry has no saved originals)</p>"
                );
            }
        }
        zoomable(
            &mut h,
            &format!("{stage}: reconstructions, step {step}"),
            reconstructed,
        );
        h.push_str("</div>\n");
    }
    h
}

/// `probe_accuracy` of a `metrics.json` as (attribute, accuracy).
fn probe_accuracy(metrics: &Value) -> Option<Vec<(String, f64)>> {
    let map = metrics.get("probe_accuracy")?.as_object()?;
    let items: Vec<(String, f64)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    (!items.is_empty()).then_some(items)
}

/// What a face does when it gains the attribute, for the sentence.
fn gains(attribute: &str) -> String {
    match attribute {
        "Smiling" => "smile more".to_owned(),
        other => format!("show more {}", other.replace('_', " ")),
    }
}

/// The render-attribute numbers: amounts, P per face per amount, the attribute.
struct Gain {
    attribute: String,
    amounts: Vec<f64>,
    per_face: Vec<Vec<f64>>,
}

fn gain(metrics: &Value) -> Option<Gain> {
    let nums =
        |v: &Value| -> Option<Vec<f64>> { v.as_array()?.iter().map(Value::as_f64).collect() };
    let per_face: Vec<Vec<f64>> = metrics
        .get("probability_per_face")?
        .as_array()?
        .iter()
        .map(nums)
        .collect::<Option<_>>()?;
    Some(Gain {
        attribute: metrics
            .get("attribute")
            .and_then(Value::as_str)
            .unwrap_or("the attribute")
            .to_owned(),
        amounts: nums(metrics.get("amounts")?)?,
        per_face,
    })
}

/// "14 of 16 faces smile more as the vector grows (P(Smiling) higher at amount 4.5 than at 0)."
pub fn share_rising_sentence(metrics: &Value) -> Option<String> {
    if let Some(g) = gain(metrics) {
        let rising = g
            .per_face
            .iter()
            .filter(|p| p.len() >= 2 && p[p.len() - 1] > p[0])
            .count();
        let (first, last) = (g.amounts.first()?, g.amounts.last()?);
        return Some(format!(
            "{rising} of {} faces {} as the vector grows (P({}) higher at amount {} than at {}).",
            g.per_face.len(),
            gains(&g.attribute),
            g.attribute,
            charts::tick_label(*last),
            charts::tick_label(*first)
        ));
    }
    let share = metrics.get("share_rising")?.as_f64()?;
    Some(format!(
        "{:.0}% of the rendered faces rise in P(attribute) from the first amount to the last.",
        share * 100.0
    ))
}

/// The attribute section of one stage, from its `metrics.json`: probe bars and/or the gain lines.
pub fn attributes(stage: &str, metrics: &Value) -> String {
    let mut h = String::new();
    if let Some(items) = probe_accuracy(metrics) {
        let average = metrics
            .get("probe_average_accuracy")
            .and_then(Value::as_f64);
        let held_out = metrics.get("probe_held_out").and_then(Value::as_bool);
        let _ = writeln!(
            h,
            "<figure>{}<figcaption>{}: linear-probe accuracy per attribute on {} rows{}</figcaption></figure>",
            charts::sorted_bars(
                &format!("{} attributes, probe accuracy", items.len()),
                &items,
                average
            ),
            esc(stage),
            metrics
                .get("probe_test_rows")
                .map_or("the".to_owned(), |v| v.to_string()),
            match held_out {
                Some(false) => " (not held out: scored on its training rows)",
                _ => " held out from its training",
            }
        );
    }
    if let Some(g) = gain(metrics) {
        let _ = writeln!(
            h,
            "<figure>{}<figcaption>{}: P({}) of each rendered face (one line per face; black: their mean)</figcaption></figure>",
            charts::lines(
                &format!("P({}) against the amount added", g.attribute),
                "amount of the vector added",
                &g.amounts,
                &g.per_face
            ),
            esc(stage),
            esc(&g.attribute)
        );
    }
    if let Some(sentence) = share_rising_sentence(metrics) {
        let _ = writeln!(h, "<p class=\"verdict\">{}</p>", esc(sentence.as_str()));
    }
    h
}

/// One line per stage that has something to say: the loss trend, the probe average, the smile.
pub fn verdict(stage: &str, series: Option<&Series>, metrics: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(series) = series {
        let loss = ["total_loss", "loss"]
            .iter()
            .find_map(|n| series.get(*n).map(|s| (*n, s)));
        if let Some((name, (steps, values))) = loss {
            let window = (values.len() / 20).clamp(1, 500);
            let smooth = charts::moving_average(values, window);
            let head = window.min(values.len());
            let first = values[..head].iter().sum::<f64>() / head.max(1) as f64;
            if let (Some(last), Some(step)) = (smooth.last(), steps.last()) {
                let change = if first != 0.0 {
                    format!(" ({:+.0}%)", (last / first - 1.0) * 100.0)
                } else {
                    String::new()
                };
                out.push(format!(
                    "{stage}: {name} went from {} to {}{change} over {step} steps (averages of {window}).",
                    fmt(first),
                    fmt(*last)
                ));
            }
        }
    }
    if let Some(m) = metrics {
        if let Some(avg) = m.get("probe_average_accuracy").and_then(Value::as_f64) {
            let n = probe_accuracy(m).map_or(0, |v| v.len());
            out.push(format!(
                "{stage}: the linear probes read {n} attributes from the latents with {:.1}% average accuracy.",
                avg * 100.0
            ));
        }
        if let Some(s) = share_rising_sentence(m) {
            out.push(format!("{stage}: {s}"));
        }
    }
    out
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e5) {
        format!("{v:.3e}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn share_rising_in_words_counts_the_faces() {
        let m = json!({
            "attribute": "Smiling",
            "amounts": [0.0, 2.0, 4.5],
            "probability_per_face": [[0.1, 0.5, 0.9], [0.4, 0.3, 0.2], [0.2, 0.2, 0.6]],
            "share_rising": 0.6667,
        });
        assert_eq!(
            share_rising_sentence(&m).unwrap(),
            "2 of 3 faces smile more as the vector grows (P(Smiling) higher at amount 4.5 than at 0)."
        );
        let other = json!({"attribute": "Eyeglasses", "amounts": [0.0, 1.0],
                           "probability_per_face": [[0.5, 0.4]]});
        assert!(share_rising_sentence(&other)
            .unwrap()
            .starts_with("0 of 1 faces show more Eyeglasses"));
        // An entry from before per-face probabilities still gets its share in words.
        assert!(share_rising_sentence(&json!({"share_rising": 0.75}))
            .unwrap()
            .starts_with("75% of the rendered faces"));
    }

    #[test]
    fn series_skip_a_torn_last_line_and_keep_steps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"step\":1,\"total_loss\":10.0}\n{\"step\":2,\"total_loss\":8.0}\n{\"step\":3,\"tot",
        )
        .unwrap();
        let s = read_series(dir.path()).unwrap();
        assert_eq!(s["total_loss"], (vec![1.0, 2.0], vec![10.0, 8.0]));
        let v = verdict("train", Some(&s), None);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].contains("total_loss went from 10.000 to 8.000 (-20%) over 2 steps"),
            "{v:?}"
        );
    }

    #[test]
    fn grids_pair_originals_with_reconstructions() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "reconstructed_000002.png",
            "reconstructed_000010.png",
            "original_000010.png",
        ] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let g = saved_grids(dir.path());
        assert_eq!(g.iter().map(|x| x.0).collect::<Vec<_>>(), [2, 10]);
        assert!(g[0].1.is_none() && g[1].1.is_some());
    }
}
