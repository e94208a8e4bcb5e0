//! What a run leaves for people to read: the sweep summary (`sweep.json`, the hook for image
//! outputs built outside the engine), the sweep table (`sweep.csv`, `sweep.md`) and the static
//! `report.html` pages ([`html`]: its charts in [`charts`], its "did it work?" parts in
//! [`sections`], its rewrites while a run goes on in [`live`]).
//!
//! Everything here is read back from the cache after the scheduler is done: entry directories,
//! manifests and the `metrics.json` files stages wrote. Nothing is decoded: PNGs a stage produced
//! are embedded byte for byte, so the engine stays free of image code. The summary is plain data
//! ([`SweepSummary`]) so the root crate can build contact sheets and multi-variant loss plots
//! from it, either through `Registry::with_sweep_hook` or by reading `sweep.json`.
//!
//! `sweep.json` (format 1):
//!
//! ```json
//! { "format": 1, "experiment": "smile", "mode": "grid", "created_at": "2025-…Z",
//!   "axes": [ { "path": "stage.train.alfa", "label": "alfa", "values": [0.5, 1.0] } ],
//!   "metrics": ["final_total_loss", "…"],
//!   "variants": [ { "name": "alfa-0.5", "dir": "/abs/runs/smile/alfa-0.5",
//!                   "values": { "stage.train.alfa": 0.5 },
//!                   "wall_time_s": 12.5, "cache": "miss",
//!                   "stages": [ { "stage": "gen", "kind": "synth-faces", "key": "…",
//!                                 "dir": "/abs/cache/entries/<key>", "link": "/abs/runs/smile/alfa-0.5/gen",
//!                                 "status": "hit", "shared": true, "elapsed_s": 0.01,
//!                                 "compute_s": 3.2, "metrics": { "…": 1.0 } } ] } ] }
//! ```

pub mod charts;
pub mod html;
pub mod live;
pub mod parallel;
pub mod sections;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::manifest::{rfc3339, Manifest};
use crate::cache::CacheStore;
use crate::config::sweep::display_value;
use crate::config::Sweep;
use crate::scheduler::{Outcome, RunReport, SweepPlan};

pub const SWEEP_JSON: &str = "sweep.json";
pub const SWEEP_CSV: &str = "sweep.csv";
pub const SWEEP_MD: &str = "sweep.md";
pub const REPORT_HTML: &str = "report.html";
pub const SUMMARY_FORMAT: u32 = 1;

/// The `metrics.json` fields `sweep.csv` shows when `[sweep] metrics` does not say: the final
/// losses of `train-vae`, the smile gain of `render-attribute` and the probe average of
/// `attribute-vectors`; whichever exist.
pub const CONVENTIONAL_METRICS: &[&str] = &[
    "final_total_loss",
    "final_reconstruction_loss",
    "final_kl_loss",
    "share_rising",
    "probe_average_accuracy",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AxisSummary {
    pub path: String,
    pub label: String,
    pub values: Vec<serde_json::Value>,
}

/// One stage of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub stage: String,
    pub kind: String,
    pub key: String,
    /// The cache entry directory (absolute): where the stage's files are.
    pub dir: PathBuf,
    /// The `runs/` link to it (absolute).
    pub link: PathBuf,
    /// `ran`, `hit`, `failed`, `skipped`, `cancelled`; without a run: `cached` or `missing`.
    pub status: String,
    /// True when every variant shares this entry.
    pub shared: bool,
    /// Seconds this invocation spent on it (0 for a hit).
    pub elapsed_s: Option<f64>,
    /// Seconds it took to compute the entry (from its manifest).
    pub compute_s: Option<f64>,
    /// Top-level scalars of its `metrics.json`.
    pub metrics: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    /// `alfa-0.5_beta-1`; the experiment name outside a sweep.
    pub name: String,
    /// `runs/<experiment>/<variant>` (absolute).
    pub dir: PathBuf,
    /// Swept path → value.
    pub values: BTreeMap<String, serde_json::Value>,
    /// Sum of the variant's stages' compute times (shared stages count in every variant).
    pub wall_time_s: f64,
    /// `hit` (nothing ran for it), `miss` (something ran), `failed`; without a run: `cached` or
    /// `missing`.
    pub cache: String,
    /// In topological order.
    pub stages: Vec<StageSummary>,
    /// An adaptive sweep's trial: its halving rung, where it came from ("tpe generation 2, from
    /// trials 0–7") and why it was not continued ("rung 1: score 0.71 < cutoff 0.74, rank 9 of 16").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub format: u32,
    pub experiment: String,
    pub mode: String,
    pub created_at: String,
    pub axes: Vec<AxisSummary>,
    /// The metric names the table looks for.
    pub metrics: Vec<String>,
    pub variants: Vec<VariantSummary>,
    /// An adaptive sweep's objective (`stage.metric`) and goal (`max`/`min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
}

impl SweepSummary {
    /// Reads a `sweep.json`.
    pub fn read(path: &Path) -> io::Result<SweepSummary> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(io::Error::other)
    }
}

/// Builds the summary of a planned (and, with `report`, executed) sweep. `runs_dir` should be
/// absolute for the paths in it to be. Without `report`, statuses say whether the entry is in
/// the cache.
pub fn summarize(
    sweep: &Sweep,
    plan: &SweepPlan,
    report: Option<&RunReport>,
    store: &CacheStore,
    runs_dir: &Path,
) -> SweepSummary {
    let mut metric_names: Vec<String> = match &sweep.metrics {
        Some(m) => m.clone(),
        None => CONVENTIONAL_METRICS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    if let Some((_, metric)) = sweep
        .search
        .as_ref()
        .and_then(|s| s.objective.split_once('.'))
    {
        if !metric_names.iter().any(|m| m == metric) {
            metric_names.insert(0, metric.to_owned());
        }
    }
    let mut variants = Vec::new();
    for (v, exp) in sweep.variants.iter().enumerate() {
        let trial = sweep.search.as_ref().and_then(|s| s.trials.get(v));
        let mut stages = Vec::new();
        let (mut wall, mut any_ran, mut any_bad, mut any_missing) = (0.0, false, false, false);
        for (name, node) in &plan.variant_stages[v] {
            let ps = &plan.plan.stages[*node];
            let dir = store.entry_dir(&ps.key);
            let manifest = Manifest::read(&dir, Some(&ps.key));
            let (status, elapsed) = match report.and_then(|r| r.results.get(*node)) {
                Some((_, o)) => {
                    let elapsed = match o {
                        Outcome::Ran { duration, .. } => Some(duration.as_secs_f64()),
                        Outcome::Hit { .. } => Some(0.0),
                        _ => None,
                    };
                    (o.status().to_owned(), elapsed)
                }
                None if manifest.is_some() => ("cached".to_owned(), None),
                None => ("missing".to_owned(), None),
            };
            match status.as_str() {
                "ran" => any_ran = true,
                "hit" | "cached" => {}
                "missing" => any_missing = true,
                _ => any_bad = true,
            }
            let compute = manifest.as_ref().map(|m| m.duration_s);
            wall += compute.unwrap_or(0.0);
            stages.push(StageSummary {
                stage: name.clone(),
                kind: ps.kind.clone(),
                key: ps.key.to_string(),
                link: runs_dir.join(exp.runs_subdir()).join(name),
                dir,
                status,
                shared: sweep.is_sweep() && ps.users.len() == sweep.variants.len(),
                elapsed_s: elapsed,
                compute_s: compute,
                metrics: read_metrics(&store.entry_dir(&ps.key)),
            });
        }
        let cache = if any_bad {
            "failed"
        } else if any_ran {
            "miss"
        } else if any_missing {
            "missing"
        } else if report.is_some() {
            "hit"
        } else {
            "cached"
        };
        variants.push(VariantSummary {
            name: exp
                .variant
                .as_ref()
                .map_or_else(|| exp.name.clone(), |i| i.name.clone()),
            dir: runs_dir.join(exp.runs_subdir()),
            values: exp
                .variant
                .iter()
                .flat_map(|i| i.values.iter().cloned())
                .collect(),
            wall_time_s: wall,
            cache: cache.to_owned(),
            stages,
            rung: trial.and_then(|t| t.rung),
            origin: trial.map(|t| t.origin.clone()),
            stop_reason: trial.and_then(|t| t.stop_reason.clone()),
        });
    }
    SweepSummary {
        format: SUMMARY_FORMAT,
        experiment: sweep.base.name.clone(),
        mode: sweep.strategy_name().to_owned(),
        created_at: rfc3339(std::time::SystemTime::now()),
        axes: sweep
            .axes
            .iter()
            .map(|a| AxisSummary {
                path: a.path.clone(),
                label: a.label.clone(),
                values: a.values.clone(),
            })
            .collect(),
        metrics: metric_names,
        variants,
        objective: sweep.search.as_ref().map(|s| s.objective.clone()),
        goal: sweep.search.as_ref().map(|s| {
            match s.goal {
                crate::config::sweep::search::Goal::Max => "max",
                crate::config::sweep::search::Goal::Min => "min",
            }
            .to_owned()
        }),
    }
}

/// Top-level scalars (numbers, booleans, short strings) of `dir/metrics.json`.
pub fn read_metrics(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(dir.join("metrics.json")) else {
        return BTreeMap::new();
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text)
    else {
        return BTreeMap::new();
    };
    map.into_iter()
        .filter(|(_, v)| match v {
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
            serde_json::Value::String(s) => s.len() <= 40,
            _ => false,
        })
        .collect()
}

/// The sweep table: header and rows of cells (variant, each swept value, `<stage>.<metric>` for
/// each listed metric some variant has, wall time, cache).
pub fn table(summary: &SweepSummary) -> (Vec<String>, Vec<Vec<String>>) {
    let mut columns: Vec<(String, String)> = Vec::new();
    if let Some(first) = summary.variants.first() {
        for st in &first.stages {
            for m in &summary.metrics {
                let present = summary.variants.iter().any(|v| {
                    v.stages
                        .iter()
                        .any(|s| s.stage == st.stage && s.metrics.contains_key(m))
                });
                if present {
                    columns.push((st.stage.clone(), m.clone()));
                }
            }
        }
    }
    let mut header = vec!["variant".to_owned()];
    header.extend(summary.axes.iter().map(|a| a.label.clone()));
    header.extend(columns.iter().map(|(s, m)| format!("{s}.{m}")));
    let adaptive = summary.objective.is_some();
    if adaptive {
        header.extend(["rung".into(), "origin".into(), "stop_reason".into()]);
    }
    header.push("wall_time_s".into());
    header.push("cache".into());
    let rows = summary
        .variants
        .iter()
        .map(|v| {
            let mut row = vec![v.name.clone()];
            for a in &summary.axes {
                row.push(v.values.get(&a.path).map_or(String::new(), |x| {
                    if x.is_array() || x.is_object() {
                        x.to_string()
                    } else {
                        display_value(x, "+")
                    }
                }));
            }
            for (stage, m) in &columns {
                let cell = v
                    .stages
                    .iter()
                    .find(|s| s.stage == *stage)
                    .and_then(|s| s.metrics.get(m))
                    .map_or(String::new(), format_metric);
                row.push(cell);
            }
            if adaptive {
                row.push(v.rung.map_or(String::new(), |r| r.to_string()));
                row.push(v.origin.clone().unwrap_or_default());
                row.push(v.stop_reason.clone().unwrap_or_default());
            }
            row.push(format!("{:.2}", v.wall_time_s));
            row.push(v.cache.clone());
            row
        })
        .collect();
    (header, rows)
}

/// A metric cell: floats to 6 significant digits, the rest as is.
pub fn format_metric(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f != 0.0 && (f.abs() < 1e-4 || f.abs() >= 1e7) {
                format!("{f:.5e}")
            } else {
                let s = format!("{f:.6}");
                s.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn to_csv(header: &[String], rows: &[Vec<String>]) -> String {
    let cell = |c: &String| {
        if c.contains([',', '"', '\n']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.clone()
        }
    };
    let mut out = String::new();
    for line in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = line.iter().map(cell).collect();
        let _ = writeln!(out, "{}", cells.join(","));
    }
    out
}

pub fn to_markdown(title: &str, header: &[String], rows: &[Vec<String>]) -> String {
    let cell = |c: &String| c.replace('|', "\\|");
    let mut out = format!("# {title}\n\n");
    let _ = writeln!(
        out,
        "| {} |",
        header.iter().map(cell).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(cell).collect::<Vec<_>>().join(" | ")
        );
    }
    out
}

/// Writes `sweep.json`, `sweep.csv` and `sweep.md` into `dir` (`runs/<experiment>`); returns
/// their paths.
pub fn write_sweep_files(summary: &SweepSummary, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let (header, rows) = table(summary);
    let title = format!(
        "Sweep `{}`: {} variants ({})",
        summary.experiment,
        summary.variants.len(),
        summary.mode
    );
    let files = [
        (
            SWEEP_JSON,
            serde_json::to_string_pretty(summary).map_err(io::Error::other)? + "\n",
        ),
        (SWEEP_CSV, to_csv(&header, &rows)),
        (SWEEP_MD, to_markdown(&title, &header, &rows)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        crate::atomic_file::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Writes through a temp file and a rename, so a reader never sees half a file.
#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_and_markdown_escape_their_separators() {
        let header = vec!["variant".to_owned(), "x".to_owned()];
        let rows = vec![vec!["a,b".to_owned(), "say \"hi\" | there".to_owned()]];
        assert_eq!(
            to_csv(&header, &rows),
            "variant,x\n\"a,b\",\"say \"\"hi\"\" | there\"\n"
        );
        assert!(to_markdown("t", &header, &rows).ends_with("| a,b | say \"hi\" \\| there |\n"));
    }

    #[test]
    fn metric_cells() {
        assert_eq!(format_metric(&json!(0.25)), "0.25");
        assert_eq!(format_metric(&json!(3)), "3");
        assert_eq!(format_metric(&json!(1.0e-6)), "1.00000e-6");
        assert_eq!(format_metric(&json!(12.3456789)), "12.345679");
    }
}
