//! `vaepipe diff A B`: what differs between two runs, each given as an experiment file
//! (`exp.toml`), a variant of a sweep (`exp.toml@alfa-0.5`) or a `runs/` directory
//! (`runs/demo`, `runs/smile/alfa-0.5`). It prints the params that differ (resolved, defaults
//! filled: the key preimages), which stages' keys differ and why (the reasons `plan` gives,
//! [`crate::cache::dirty::explain_between`]), both runs' metrics with B − A, and writes a
//! side-by-side HTML page of their curves and images (`--output`, default `diff.html`).
//!
//! `--set` and `--sweep` apply to the experiment files as they do for `run` (a variant named in
//! `FILE@VARIANT` may come from `--sweep`). An experiment file is planned, not run: its stages show the cache's entries when they exist
//! (metrics and images need a run). Exit 0 whether or not they differ; 2 for arguments that
//! name none of the three.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::dirty::{explain_between, flatten};
use crate::cache::manifest::{Manifest, UpstreamRecord};
use crate::cache::{CacheStore, KeyPreimage};
use crate::registry::Registry;
use crate::report::{format_metric, html, read_metrics, sections};

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The first run: `FILE.toml`, `FILE.toml@VARIANT` or a `runs/` directory.
    pub a: String,
    /// The second run, in any of the same forms.
    pub b: String,
    /// Override a param of the experiment files (both sides), as `run --set` does.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The sweep the experiment files were run with (`run --sweep`), for `FILE@VARIANT`.
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Where to write the side-by-side HTML page.
    #[arg(long, short = 'o', value_name = "PATH", default_value = "diff.html")]
    pub output: PathBuf,
}

/// One stage of one side.
struct StageSide {
    name: String,
    kind: String,
    key: String,
    preimage: KeyPreimage,
    upstream: BTreeMap<String, UpstreamRecord>,
    /// Its committed entry, when there is one.
    entry: Option<PathBuf>,
}

/// One side of the comparison, stages in run order.
struct Side {
    label: String,
    stages: Vec<StageSide>,
}

impl Side {
    fn stage(&self, name: &str) -> Option<&StageSide> {
        self.stages.iter().find(|s| s.name == name)
    }
}

pub fn diff(args: DiffArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let (a, store_a) = side(&args.a, &args, global, registry)?;
    let (b, store_b) = side(&args.b, &args, global, registry)?;
    let store = store_b.or(store_a);
    print!("{}", render_text(&a, &b, store.as_ref()));
    std::fs::write(&args.output, render_html(&a, &b))
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.output.display())))?;
    println!("side by side: {}", args.output.display());
    Ok(())
}

/// Reads one argument into a side (and the cache it came with, for input listings).
fn side(
    arg: &str,
    args: &DiffArgs,
    global: &GlobalArgs,
    registry: &Registry,
) -> Result<(Side, Option<CacheStore>), CliError> {
    let path = Path::new(arg);
    if path.is_dir() {
        let side = runs_side(arg, path)?;
        // An entry is `<cache>/entries/<key>`: its cache holds the input listings.
        let store = side
            .stages
            .iter()
            .find_map(|s| s.entry.as_deref()?.parent()?.parent())
            .and_then(|root| CacheStore::open_existing(root).ok());
        return Ok((side, store));
    }
    let (file, variant) = match arg.rsplit_once('@') {
        Some((f, v)) if Path::new(f).is_file() && !path.is_file() => (Path::new(f), Some(v)),
        _ => (path, None),
    };
    if !file.is_file() {
        return Err(CliError::Usage(format!(
            "`{arg}` is not an experiment file, `FILE.toml@VARIANT` or a runs/ directory\n  help: e.g. `vaepipe diff experiments/demo.toml runs/demo`"
        )));
    }
    let (sweep, store, plan) = super::plan_file(file, registry, &args.set, &args.sweep, global)?;
    let names: Vec<String> = sweep
        .variants
        .iter()
        .filter_map(|e| e.variant.as_ref().map(|v| v.name.clone()))
        .collect();
    let v = match (variant, sweep.is_sweep()) {
        (None, false) => 0,
        (Some(v), true) => names.iter().position(|n| n == v).ok_or_else(|| {
            CliError::Usage(format!(
                "`{}` has no variant `{v}`\n  help: its variants: {}",
                file.display(),
                names.join(", ")
            ))
        })?,
        (None, true) => {
            return Err(CliError::Usage(format!(
                "`{}` is a sweep; name one variant: `{}@{}`\n  help: its variants: {}",
                file.display(),
                file.display(),
                names.first().map_or("VARIANT", String::as_str),
                names.join(", ")
            )))
        }
        (Some(v), false) => {
            return Err(CliError::Usage(format!(
                "`{}` is not a sweep, so it has no variant `{v}`",
                file.display()
            )))
        }
    };
    let stages = plan.variant_stages[v]
        .iter()
        .map(|(name, node)| {
            let ps = &plan.plan.stages[*node];
            let dir = store.entry_dir(&ps.key);
            StageSide {
                name: name.clone(),
                kind: ps.kind.clone(),
                key: ps.key.to_string(),
                preimage: ps.preimage.clone(),
                upstream: ps.upstream.clone(),
                entry: Manifest::read(&dir, Some(&ps.key)).map(|_| dir),
            }
        })
        .collect();
    Ok((
        Side {
            label: arg.to_owned(),
            stages,
        },
        Some(store),
    ))
}

/// A `runs/<experiment>[/<variant>]` directory: its stage links, each an entry with a manifest.
fn runs_side(arg: &str, dir: &Path) -> Result<Side, CliError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| CliError::Usage(format!("cannot read `{arg}`: {e}")))?;
    let mut stages: Vec<(String, StageSide)> = Vec::new();
    let mut variants = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        match Manifest::read(&path, None) {
            Some(m) => stages.push((
                m.started_at.clone(),
                StageSide {
                    name,
                    kind: m.kind.clone(),
                    key: m.key.to_string(),
                    preimage: m.preimage.clone(),
                    upstream: m.upstream.clone(),
                    entry: Some(std::fs::canonicalize(&path).unwrap_or(path)),
                },
            )),
            None if path.is_dir() && path.join(crate::report::REPORT_HTML).is_file() => {
                variants.push(name)
            }
            None => {}
        }
    }
    if stages.is_empty() {
        variants.sort();
        let help = if variants.is_empty() {
            "  help: give `runs/<experiment>` after a `vaepipe run`, or the experiment file"
                .to_owned()
        } else {
            format!(
                "  help: it is a sweep; name a variant: {}",
                variants
                    .iter()
                    .map(|v| format!("`{}`", dir.join(v).display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(CliError::Usage(format!(
            "`{arg}` holds no stage entries\n{help}"
        )));
    }
    stages.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| x.1.name.cmp(&y.1.name)));
    Ok(Side {
        label: arg.to_owned(),
        stages: stages.into_iter().map(|(_, s)| s).collect(),
    })
}

/// Stage names in A's order, then B's extra ones.
fn stage_names(a: &Side, b: &Side) -> Vec<String> {
    let mut names: Vec<String> = a.stages.iter().map(|s| s.name.clone()).collect();
    for s in &b.stages {
        if !names.contains(&s.name) {
            names.push(s.name.clone());
        }
    }
    names
}

fn show(v: Option<&Value>) -> String {
    v.map_or("(unset)".to_owned(), Value::to_string)
}

/// The text `diff` prints.
fn render_text(a: &Side, b: &Side, store: Option<&CacheStore>) -> String {
    let mut out = format!("A: {}\nB: {}\n\n", a.label, b.label);
    let names = stage_names(a, b);

    // Params, resolved with their defaults (the key preimages).
    let mut params = Vec::new();
    let seeds: BTreeSet<(u64, u64)> = names
        .iter()
        .filter_map(|n| Some((a.stage(n)?.preimage.seed, b.stage(n)?.preimage.seed)))
        .filter(|(x, y)| x != y)
        .collect();
    for (x, y) in &seeds {
        params.push(("experiment.seed".to_owned(), x.to_string(), y.to_string()));
    }
    for n in &names {
        match (a.stage(n), b.stage(n)) {
            (Some(x), Some(y)) => {
                if x.kind != y.kind {
                    params.push((format!("stage.{n}.kind"), x.kind.clone(), y.kind.clone()));
                    continue;
                }
                let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
                flatten("", &x.preimage.params, &mut fa);
                flatten("", &y.preimage.params, &mut fb);
                let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
                for k in keys {
                    let (va, vb) = (fa.get(k).copied(), fb.get(k).copied());
                    if va != vb {
                        params.push((format!("stage.{n}.{k}"), show(va), show(vb)));
                    }
                }
            }
            (Some(_), None) => {
                params.push((format!("stage.{n}"), "present".into(), "(absent)".into()))
            }
            (None, Some(_)) => {
                params.push((format!("stage.{n}"), "(absent)".into(), "present".into()))
            }
            (None, None) => {}
        }
    }
    out.push_str("params that differ (resolved, defaults included):\n");
    if params.is_empty() {
        out.push_str("  none\n");
    }
    let w = params.iter().map(|p| p.0.len()).max().unwrap_or(0);
    for (k, x, y) in &params {
        let _ = writeln!(out, "  {k:w$}  {x} → {y}");
    }

    // Keys, and why they differ.
    out.push_str("\nstages:\n");
    let w = names.iter().map(String::len).max().unwrap_or(0);
    for n in &names {
        let line = match (a.stage(n), b.stage(n)) {
            (Some(x), Some(y)) if x.key == y.key => format!("same key {}", short(&x.key)),
            (Some(x), Some(y)) => {
                let upstream_names: BTreeMap<String, String> = y
                    .upstream
                    .iter()
                    .map(|(role, u)| (role.clone(), u.stage.clone()))
                    .collect();
                let why: Vec<String> = explain_between(
                    &x.preimage,
                    &x.upstream,
                    &y.preimage,
                    &upstream_names,
                    store,
                )
                .iter()
                .map(|r| r.present())
                .collect();
                format!(
                    "key differs ({} → {}): {}",
                    short(&x.key),
                    short(&y.key),
                    why.join("; ")
                )
            }
            (Some(_), None) => "only in A".to_owned(),
            (None, Some(_)) => "only in B".to_owned(),
            (None, None) => continue,
        };
        let _ = writeln!(out, "  {n:w$}  {line}");
    }

    // Metrics.
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for n in &names {
        let ma = a
            .stage(n)
            .and_then(|s| s.entry.as_deref())
            .map(read_metrics)
            .unwrap_or_default();
        let mb = b
            .stage(n)
            .and_then(|s| s.entry.as_deref())
            .map(read_metrics)
            .unwrap_or_default();
        let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for k in keys {
            let (va, vb) = (ma.get(k), mb.get(k));
            let delta = match (va.and_then(Value::as_f64), vb.and_then(Value::as_f64)) {
                (Some(x), Some(y)) => format_metric(&serde_json::json!(y - x)),
                _ if va == vb => "=".to_owned(),
                _ => "≠".to_owned(),
            };
            let cell = |v: Option<&Value>| v.map_or("-".to_owned(), format_metric);
            rows.push((format!("{n}.{k}"), cell(va), cell(vb), delta));
        }
    }
    out.push_str("\nmetrics (A, B, B − A):\n");
    if rows.is_empty() {
        out.push_str("  none (neither side has a run's metrics.json)\n");
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0);
    for (k, x, y, d) in &rows {
        let _ = writeln!(out, "  {k:w0$}  {x:>w1$}  {y:>w2$}  {d}");
    }
    out
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// The side-by-side page: per stage that has files on either side, the training curves, the
/// last reconstructions and the other images, A left and B right.
fn render_html(a: &Side, b: &Side) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>diff</title><style>{}</style></head><body>\n<h1>diff</h1><p class=\"sub\">A: {} · B: {}</p>\n",
        "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%;table-layout:fixed}\
td,th{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}th{background:#f4f4f4}\
img{max-width:100%;image-rendering:pixelated}.zoom input{display:none}\
.zoom input:checked+img{position:fixed;top:2vh;left:2vw;width:96vw;height:96vh;max-width:none;object-fit:contain;z-index:9;background:#fff;box-shadow:0 0 0 100vmax rgba(0,0,0,.75)}\
svg{max-width:100%;height:auto}figure{margin:.3em 0}figcaption{color:#555;font-size:.9em}",
        html::esc(&a.label),
        html::esc(&b.label)
    );
    let cell = |s: Option<&StageSide>| -> String {
        let Some(dir) = s.and_then(|s| s.entry.as_deref()) else {
            return "<p>(no entry)</p>".to_owned();
        };
        let mut c = String::new();
        if let Some(series) = sections::read_series(dir) {
            c.push_str(&sections::training(&series));
        }
        if let Some((step, _, last)) = sections::saved_grids(dir).last() {
            html::zoomable(&mut c, &format!("reconstructions, step {step}"), last);
        }
        for img in html::stage_images(dir) {
            let name = img
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            html::zoomable(&mut c, &name, &img);
        }
        c
    };
    h.push_str("<table><tr><th style=\"width:10%\">stage</th><th>A</th><th>B</th></tr>\n");
    for n in stage_names(a, b) {
        let (x, y) = (cell(a.stage(&n)), cell(b.stage(&n)));
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td>{x}</td><td>{y}</td></tr>",
            html::esc(&n)
        );
    }
    h.push_str("</table></body></html>\n");
    h
}
