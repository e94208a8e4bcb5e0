//! Sweeps: `[sweep]` and `--sweep` → one resolved [`Experiment`] per variant.
//!
//! A sweep maps dotted param paths (`stage.<stage>.<param...>` or `experiment.seed`) to lists of
//! values. `mode = "grid"` (the default) takes every combination, first axis slowest;
//! `mode = "zip"` takes the i-th value of every list together. `--sweep PATH=V1,V2` adds an axis
//! from the command line, replacing a `[sweep]` axis with the same path; `--sweep-mode` overrides
//! `mode`. Each value goes through exactly what a `--set` goes through (the kind's `Params`
//! deserializer, then its `validate`), so a bad value is reported at its own span, once.
//!
//! A variant is just the experiment with its values applied, so its stages' keys are the keys of
//! the resolved stages: sweeps add nothing to `cache::key`. Where variants' stages resolve to the
//! same key, the scheduler runs them once (see `scheduler::plan_sweep`).
//!
//! Variant names are built from the typed values (`1` and `1.0` name the same variant) so adding
//! a value to a list never renames the existing variants: `label-value` per axis, joined by `_`
//! (`alfa-0.5_beta-1`), lists joined by `+`, anything outside `[A-Za-z0-9._+-]` replaced by `-`.
//! The label is the param's last path segment, widened to `stage.param` when two axes would
//! share it. Names that would collide or grow past 120 characters get a short hash suffix.
//!
//! `strategy = "random" | "tpe" | "halving"` makes the sweep adaptive: its variants are trials
//! proposed generation by generation from the results of earlier ones (`sweep/search.rs` types
//! the keys and drives the generations, `sweep/space.rs` holds the distributions and the seeded
//! draws, `sweep/tpe.rs` and `sweep/halving.rs` the two adaptive strategies, and
//! `sweep/adaptive.rs` turns the trials into variants named `t000`, `t001`, … (`t012-r1` on a
//! halving rung above 0)).

pub mod adaptive;
pub mod halving;
pub mod search;
pub mod space;
pub mod tpe;

pub use adaptive::{FixedTrial, Looked, SearchInfo, SearchResults, TrialInfo};

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use super::error::{ConfigError, ConfigErrors, ErrorSite, SourceFile};
use super::raw;
use super::resolve::{
    finish, parse_cli_value, parse_overrides, read_source, resolve_raw, Experiment, Origin,
    Override, OverrideTarget, VariantInfo,
};
use crate::registry::Registry;

/// How the axes' lists combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SweepMode {
    /// Every combination (cartesian product), first axis slowest.
    #[default]
    Grid,
    /// The i-th value of every list together; all lists must have the same length.
    Zip,
}

impl SweepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepMode::Grid => "grid",
            SweepMode::Zip => "zip",
        }
    }
}

/// One swept param.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepAxis {
    /// `stage.train.alfa`, `experiment.seed`.
    pub path: String,
    /// Short name for variant names and table headers: `alfa` (or `train.alfa` when two axes
    /// end in `alfa`).
    pub label: String,
    /// Typed values, as the resolved params hold them, in list order.
    pub values: Vec<serde_json::Value>,
}

/// An experiment file with its sweep expanded.
#[derive(Debug)]
pub struct Sweep {
    /// The experiment without any swept value applied (`--set`s are applied).
    pub base: Experiment,
    pub mode: SweepMode,
    /// Empty when the file has no `[sweep]` and no `--sweep` was given.
    pub axes: Vec<SweepAxis>,
    /// `[sweep] metrics`: the `metrics.json` fields `sweep.csv` shows, when given.
    pub metrics: Option<Vec<String>>,
    /// One per variant, in grid/zip order. Without axes: exactly one, the base experiment again
    /// (with `variant == None`).
    pub variants: Vec<Experiment>,
    /// An adaptive sweep's trials (one per variant) and what comes next; `None` for grid/zip.
    pub search: Option<SearchInfo>,
}

impl Sweep {
    /// True when there are axes (and so `runs/<experiment>/<variant>/` directories).
    pub fn is_sweep(&self) -> bool {
        !self.axes.is_empty()
    }

    /// `grid`, `zip`, `random`, `tpe` or `halving`.
    pub fn strategy_name(&self) -> &'static str {
        match &self.search {
            Some(s) => s.strategy.as_str(),
            None => self.mode.as_str(),
        }
    }
}

/// Reads an experiment file and expands its sweep. `overrides` are `--set` arguments, `sweeps`
/// are `--sweep PATH=V1,V2,...` arguments, `mode` is `--sweep-mode`.
pub fn load_sweep(
    path: &Path,
    registry: &Registry,
    overrides: &[String],
    sweeps: &[String],
    mode: Option<SweepMode>,
) -> Result<Sweep, ConfigErrors> {
    load_sweep_capped(
        path,
        registry,
        overrides,
        sweeps,
        mode,
        DEFAULT_MAX_VARIANTS,
    )
}

/// How many variants a sweep may expand to unless the user confirms more (`--max-variants`):
/// planning 10⁵ variants took a minute and most of a gigabyte before anything ran.
pub const DEFAULT_MAX_VARIANTS: usize = 1000;

/// [`load_sweep`] with a confirmed cap on the number of variants (checked before any variant
/// is resolved).
pub fn load_sweep_capped(
    path: &Path,
    registry: &Registry,
    overrides: &[String],
    sweeps: &[String],
    mode: Option<SweepMode>,
    max_variants: usize,
) -> Result<Sweep, ConfigErrors> {
    load_sweep_searching(
        path,
        registry,
        overrides,
        sweeps,
        mode,
        max_variants,
        SearchResults::Nothing,
    )
}

/// [`load_sweep_capped`] with what is known about an adaptive sweep's trials: its variants are
/// every generation whose results `results` knows, then the next one.
pub fn load_sweep_searching(
    path: &Path,
    registry: &Registry,
    overrides: &[String],
    sweeps: &[String],
    mode: Option<SweepMode>,
    max_variants: usize,
    results: SearchResults<'_>,
) -> Result<Sweep, ConfigErrors> {
    let (source, abs) = read_source(path)?;
    expand(
        source,
        &abs,
        registry,
        overrides,
        sweeps,
        mode,
        max_variants,
        results,
    )
}

/// An axis before typing: where it came from and its values with their spans.
struct AxisIn {
    path: String,
    origin: Origin,
    key_span: Range<usize>,
    list_span: Range<usize>,
    values: Vec<(serde_json::Value, Range<usize>)>,
}

impl AxisIn {
    fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        let site = match &self.origin {
            Origin::Flag { flag, arg } => ErrorSite::Override {
                flag,
                arg: arg.clone(),
                span,
            },
            Origin::SweepTable => ErrorSite::File(span),
        };
        ConfigError {
            message,
            site,
            help: None,
        }
    }

    fn set(&self, target: &OverrideTarget, i: usize) -> Override {
        let (value, span) = &self.values[i];
        Override {
            origin: self.origin.clone(),
            target: target.clone(),
            value: value.clone(),
            key_span: self.key_span.clone(),
            value_span: span.clone(),
        }
    }
}

/// Like [`load_sweep`], from text (`file` is the absolute path it came from).
pub fn load_sweep_str(
    source: Arc<SourceFile>,
    file: &Path,
    registry: &Registry,
    overrides: &[String],
    sweeps: &[String],
    mode: Option<SweepMode>,
) -> Result<Sweep, ConfigErrors> {
    expand(
        source,
        file,
        registry,
        overrides,
        sweeps,
        mode,
        DEFAULT_MAX_VARIANTS,
        SearchResults::Nothing,
    )
}

#[allow(clippy::too_many_arguments)] // the loaders' arguments, passed through once
fn expand(
    source: Arc<SourceFile>,
    file: &Path,
    registry: &Registry,
    overrides: &[String],
    sweeps: &[String],
    mode: Option<SweepMode>,
    max_variants: usize,
    results: SearchResults<'_>,
) -> Result<Sweep, ConfigErrors> {
    let text = source.text.clone();
    let (raw, mut errors) = raw::parse(&text);
    let sets = parse_overrides(overrides, &mut errors);

    // An adaptive strategy takes over from here.
    if let Some(raw_sweep) = &raw.sweep {
        let stage_names: Vec<&str> = raw.stages.iter().map(|s| s.name.as_str()).collect();
        match search::parse_spec(raw_sweep, &stage_names, &mut errors) {
            Some(Ok(spec)) => {
                let cx = adaptive::Context {
                    raw: &raw,
                    source: source.clone(),
                    file,
                    registry,
                    sets: &sets,
                    sweep_args: sweeps,
                    max_variants,
                    metrics: raw_sweep.metrics.as_ref().map(|m| m.get_ref().clone()),
                };
                return adaptive::expand(cx, spec, errors, results);
            }
            Some(Err(())) => {
                let _ = resolve_raw(&raw, &source, file, registry, &sets, &mut errors);
                return finish(source, errors, None);
            }
            None => {}
        }
    }

    // Axes: the file's, then the command line's (replacing a file axis with the same path).
    let raw_sweep = raw.sweep.clone().unwrap_or_default();
    let mut axes: Vec<AxisIn> = raw_sweep
        .axes
        .iter()
        .map(|a| AxisIn {
            path: a.path.clone(),
            origin: Origin::SweepTable,
            key_span: a.path_span.clone(),
            list_span: a.list_span.clone(),
            values: a.values.clone(),
        })
        .collect();
    let mut from_cli: Vec<String> = Vec::new();
    for arg in sweeps {
        match parse_sweep_arg(arg) {
            Ok(axis) => {
                if from_cli.contains(&axis.path) {
                    errors.push(axis.error(
                        axis.key_span.clone(),
                        format!("`{}` is swept twice on the command line", axis.path),
                    ));
                    continue;
                }
                from_cli.push(axis.path.clone());
                match axes.iter().position(|a| a.path == axis.path) {
                    Some(i) => axes[i] = axis,
                    None => axes.push(axis),
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let mode = match (mode, &raw_sweep.mode) {
        (Some(m), _) => m,
        // `strategy = "zip"` says what `mode = "zip"` says.
        (None, None) => match raw_sweep.settings.iter().find(|f| f.name == "strategy") {
            Some(f) if f.value.as_str() == Some("zip") => SweepMode::Zip,
            _ => SweepMode::Grid,
        },
        (None, Some(m)) => match m.get_ref().as_str() {
            "grid" => SweepMode::Grid,
            "zip" => SweepMode::Zip,
            other => {
                errors.push(
                    ConfigError::at(m.span(), format!("unknown sweep mode `{other}`"))
                        .with_help_opt(super::error::suggestion(other, &["grid", "zip"], "modes")),
                );
                SweepMode::Grid
            }
        },
    };

    // Shape checks that need no resolving.
    let mut targets = Vec::new();
    for axis in &axes {
        let target = OverrideTarget::parse(&axis.path);
        match &target {
            None => {
                let mut e = axis.error(
                    axis.key_span.clone(),
                    format!("cannot sweep `{}`", axis.path),
                );
                e.help = Some(
                    "sweep `stage.<stage>.<param>` or `experiment.seed`, e.g. `\"stage.train.alfa\" = [0.5, 1.0]`"
                        .into(),
                );
                errors.push(e);
            }
            Some(t) => {
                if let Some(set) = sets.iter().find(|s| s.target == *t) {
                    errors.push(
                        set.error_on_key(format!(
                            "`{}` is both set with `--set` and swept",
                            axis.path
                        ))
                        .with_help("drop the `--set`, or the sweep axis"),
                    );
                }
            }
        }
        if axis.values.is_empty() {
            errors.push(axis.error(
                axis.list_span.clone(),
                format!("the sweep list of `{}` is empty", axis.path),
            ));
        }
        targets.push(target);
    }
    if mode == SweepMode::Zip {
        if let Some(first) = axes.first() {
            for axis in &axes[1..] {
                if axis.values.len() != first.values.len() {
                    let mut e = axis.error(
                        axis.list_span.clone(),
                        format!(
                            "a `zip` sweep needs lists of one length: `{}` has {} values, `{}` has {}",
                            axis.path,
                            axis.values.len(),
                            first.path,
                            first.values.len()
                        ),
                    );
                    e.help =
                        Some("make the lists the same length, or use `mode = \"grid\"`".into());
                    errors.push(e);
                }
            }
        }
    }

    // The variant count before anything is resolved or built.
    let count = match mode {
        SweepMode::Grid => axes
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.values.len().max(1))),
        SweepMode::Zip => Some(axes.first().map_or(1, |a| a.values.len())),
    };
    if count.is_none_or(|n| n > max_variants) {
        let shown = count.map_or_else(|| "more than 2^64".to_owned(), |n| n.to_string());
        let shape: Vec<String> = axes
            .iter()
            .map(|a| format!("`{}` ({})", a.path, a.values.len()))
            .collect();
        let message = format!(
            "the sweep has {shown} variants ({}), more than the {max_variants} allowed without confirmation",
            shape.join(if mode == SweepMode::Grid { " × " } else { ", " })
        );
        let help = format!(
            "pass `--max-variants {shown}` to run them all, or sweep fewer values (`mode = \"zip\"` pairs them)"
        );
        let e = match &raw.sweep {
            Some(table) => ConfigError::at(table.span.clone(), message),
            None => ConfigError::nowhere(message),
        };
        errors.push(e.with_help(help));
        return finish(source, errors, None);
    }

    let base = resolve_raw(&raw, &source, file, registry, &sets, &mut errors);
    let Some(base) = base else {
        return finish(source, errors, None);
    };

    // Every value on its own, through the kind's params like a `--set`: errors land on the value.
    let mut typed_axes: Vec<SweepAxis> = Vec::new();
    for (axis, target) in axes.iter().zip(&targets) {
        let Some(target) = target else { continue };
        let mut values = Vec::new();
        for i in 0..axis.values.len() {
            let mut with = sets.clone();
            with.push(axis.set(target, i));
            let Some(exp) = resolve_raw(&raw, &source, file, registry, &with, &mut errors) else {
                continue;
            };
            let typed = typed_value(&exp, target).unwrap_or_else(|| axis.values[i].0.clone());
            if values.contains(&typed) {
                errors.push(axis.error(
                    axis.values[i].1.clone(),
                    format!("`{}` lists the value {typed} twice", axis.path),
                ));
            }
            values.push(typed);
        }
        typed_axes.push(SweepAxis {
            path: axis.path.clone(),
            label: String::new(),
            values,
        });
    }
    if !errors.is_empty() {
        return finish(source, errors, None);
    }
    assign_labels(&mut typed_axes);

    let combos = combinations(&typed_axes, mode);
    let names = variant_names(&typed_axes, &combos);
    let stage_names = base.stage_names();
    let mut variants = Vec::new();
    if typed_axes.is_empty() {
        variants.push(base.clone());
    }
    for (combo, name) in combos.iter().zip(&names) {
        if stage_names.contains(&name.as_str()) {
            errors.push(
                ConfigError::at(
                    raw_sweep.span.clone(),
                    format!("sweep variant `{name}` has the name of a stage"),
                )
                .with_help(
                    "rename the stage: shared stages are linked beside the variants' directories",
                ),
            );
            continue;
        }
        let mut with = sets.clone();
        for ((axis, target), &i) in axes.iter().zip(&targets).zip(combo) {
            if let Some(target) = target {
                with.push(axis.set(target, i));
            }
        }
        if let Some(mut exp) = resolve_raw(&raw, &source, file, registry, &with, &mut errors) {
            exp.variant = Some(VariantInfo {
                name: name.clone(),
                values: typed_axes
                    .iter()
                    .zip(combo)
                    .map(|(a, &i)| (a.path.clone(), a.values[i].clone()))
                    .collect(),
            });
            variants.push(exp);
        }
    }
    let sweep = Sweep {
        base,
        mode,
        axes: typed_axes,
        metrics: raw_sweep.metrics.as_ref().map(|m| m.get_ref().clone()),
        variants,
        search: None,
    };
    finish(source, errors, Some(sweep))
}

/// `--sweep stage.train.beta=0.5,1`: values split at top-level commas (not inside `[]`, `{}` or
/// quotes), each parsed like a `--set` value.
fn parse_sweep_arg(arg: &str) -> Result<AxisIn, ConfigError> {
    let origin = Origin::Flag {
        flag: "--sweep",
        arg: arg.to_owned(),
    };
    let Some((key, rest)) = arg.split_once('=') else {
        return Err(ConfigError {
            message: "`--sweep` needs `KEY=VALUE,VALUE,...`".into(),
            site: ErrorSite::Override {
                flag: "--sweep",
                arg: arg.to_owned(),
                span: 0..arg.len(),
            },
            help: Some("for example `--sweep stage.train.beta=0.5,1`".into()),
        });
    };
    let offset = key.len() + 1;
    let mut values = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    let mut push = |from: usize, to: usize| {
        let text = &rest[from..to];
        let lead = text.len() - text.trim_start().len();
        let trimmed = text.trim();
        let span = offset + from + lead..offset + from + lead + trimmed.len();
        values.push((parse_cli_value(trimmed), span));
    };
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                push(start, i);
                start = i + 1;
            }
            _ => {}
        }
    }
    push(start, rest.len());
    Ok(AxisIn {
        path: key.trim().to_owned(),
        origin,
        key_span: 0..key.len(),
        list_span: offset..arg.len(),
        values,
    })
}

/// The value at `target` in the resolved experiment (typed by the kind's params).
fn typed_value(exp: &Experiment, target: &OverrideTarget) -> Option<serde_json::Value> {
    match target {
        OverrideTarget::Seed => Some(serde_json::Value::from(exp.seed)),
        OverrideTarget::Stage { stage, param } => {
            let mut v = &exp.stage(stage)?.params.canonical;
            for p in param {
                v = v.get(p)?;
            }
            Some(v.clone())
        }
    }
}

fn assign_labels(axes: &mut [SweepAxis]) {
    let short = |path: &str, segments: usize| -> String {
        let parts: Vec<&str> = path.split('.').collect();
        let skip = if parts.first() == Some(&"stage") {
            1
        } else {
            0
        };
        let parts = &parts[skip..];
        parts[parts.len().saturating_sub(segments)..].join(".")
    };
    let paths: Vec<String> = axes.iter().map(|a| a.path.clone()).collect();
    for axis in axes.iter_mut() {
        let mut n = 1;
        loop {
            let label = short(&axis.path, n);
            let clash = paths
                .iter()
                .any(|p| *p != axis.path && short(p, n) == label);
            if !clash || label == short(&axis.path, usize::MAX) {
                axis.label = label;
                break;
            }
            n += 1;
        }
    }
}

/// Index of each axis's value, per variant.
fn combinations(axes: &[SweepAxis], mode: SweepMode) -> Vec<Vec<usize>> {
    if axes.is_empty() {
        return Vec::new();
    }
    match mode {
        SweepMode::Zip => {
            let n = axes.iter().map(|a| a.values.len()).min().unwrap_or(0);
            (0..n).map(|i| vec![i; axes.len()]).collect()
        }
        SweepMode::Grid => {
            let mut out: Vec<Vec<usize>> = vec![Vec::new()];
            for axis in axes {
                out = out
                    .into_iter()
                    .flat_map(|prefix| {
                        (0..axis.values.len()).map(move |i| {
                            let mut c = prefix.clone();
                            c.push(i);
                            c
                        })
                    })
                    .collect();
            }
            out
        }
    }
}

/// A value as it reads in a name or a table cell: `0.5`, `1` (for `1.0`), `a+b` for a list
/// (`sep`), the string itself.
pub fn display_value(v: &serde_json::Value, list_sep: &str) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "none".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| display_value(i, list_sep))
            .collect::<Vec<_>>()
            .join(list_sep),
        Value::Object(_) => {
            let mut s = String::new();
            crate::cache::key::write_canonical(v, &mut s);
            s
        }
    }
}

/// `alfa-0.5_beta-1` for the given labelled values; filesystem-safe, not yet deduplicated.
pub fn variant_name(values: &[(&str, &serde_json::Value)]) -> String {
    let raw: Vec<String> = values
        .iter()
        .map(|(label, v)| format!("{label}-{}", display_value(v, "+")))
        .collect();
    raw.join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

const MAX_NAME: usize = 120;

fn variant_names(axes: &[SweepAxis], combos: &[Vec<usize>]) -> Vec<String> {
    let hash = |combo: &[usize]| -> String {
        let values: Vec<&serde_json::Value> =
            axes.iter().zip(combo).map(|(a, &i)| &a.values[i]).collect();
        let mut s = String::new();
        crate::cache::key::write_canonical(&serde_json::json!(values), &mut s);
        blake3::hash(s.as_bytes()).to_hex()[..8].to_owned()
    };
    let mut names: Vec<String> = combos
        .iter()
        .map(|combo| {
            let labelled: Vec<(&str, &serde_json::Value)> = axes
                .iter()
                .zip(combo)
                .map(|(a, &i)| (a.label.as_str(), &a.values[i]))
                .collect();
            let name = variant_name(&labelled);
            if name.len() > MAX_NAME {
                format!("{}-{}", &name[..MAX_NAME - 9], hash(combo))
            } else {
                name
            }
        })
        .collect();
    let originals = names.clone();
    for (i, combo) in combos.iter().enumerate() {
        if originals.iter().filter(|n| **n == originals[i]).count() > 1 {
            names[i] = format!("{}-{}", originals[i], hash(combo));
        }
    }
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use crate::stage::{Role, Stage, StageCx};
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    struct Train;
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct TrainParams {
        loss_features: Vec<String>,
        alfa: f64,
        beta: f64,
    }
    impl Default for TrainParams {
        fn default() -> Self {
            TrainParams {
                loss_features: vec!["Conv2d_1a_3x3".into()],
                alfa: 1.0,
                beta: 0.5,
            }
        }
    }
    impl Stage for Train {
        const KIND: &'static str = "train-vae";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "test";
        type Params = TrainParams;
        fn roles() -> &'static [Role] {
            &[Role {
                name: "dataset",
                required: false,
                doc: "a dataset",
            }]
        }
        fn validate(p: &TrainParams) -> Vec<crate::stage::ParamIssue> {
            if p.alfa < 0.0 {
                return vec![crate::stage::ParamIssue {
                    path: "alfa".into(),
                    message: "`alfa` must be non-negative".into(),
                    help: None,
                }];
            }
            Vec::new()
        }
        fn run(_: &TrainParams, _: &mut StageCx<'_>) -> anyhow::Result<()> {
            Ok(())
        }
    }

    const EXP: &str = "[stage.gen]\nkind = \"train-vae\"\n\n[stage.train]\nkind = \"train-vae\"\nfrom = { dataset = \"gen\" }\n";

    fn load(text: &str, sweeps: &[&str], mode: Option<SweepMode>) -> Result<Sweep, ConfigErrors> {
        let registry = Registry::new().with::<Train>();
        let source = Arc::new(SourceFile {
            display_path: "exp.toml".into(),
            text: text.to_owned(),
        });
        let sweeps: Vec<String> = sweeps.iter().map(|s| (*s).to_owned()).collect();
        load_sweep_str(
            source,
            Path::new("/nonexistent/exp.toml"),
            &registry,
            &[],
            &sweeps,
            mode,
        )
    }

    #[test]
    fn a_sweep_over_the_cap_is_refused_before_it_is_expanded() {
        // 10 × 10 × 10 × 10 × 10 = 100 000 variants: refused at once, naming the shape.
        let values: Vec<String> = (0..10).map(|i| format!("{i}.5")).collect();
        let list = values.join(",");
        let text = format!(
            "{EXP}\n[sweep]\n\"stage.train.alfa\" = [{list}]\n\"stage.train.beta\" = [{list}]\n\"stage.gen.alfa\" = [{list}]\n\"stage.gen.beta\" = [{list}]\n\"experiment.seed\" = [0,1,2,3,4,5,6,7,8,9]\n"
        );
        let started = std::time::Instant::now();
        let e = load(&text, &[], None).unwrap_err();
        let rendered = e.to_string();
        assert!(
            rendered.contains("the sweep has 100000 variants (`stage.train.alfa` (10) × `stage.train.beta` (10) × `stage.gen.alfa` (10) × `stage.gen.beta` (10) × `experiment.seed` (10)), more than the 1000 allowed"),
            "{rendered}"
        );
        assert!(rendered.contains("--max-variants 100000"), "{rendered}");
        assert_eq!(e.locations(), ["exp.toml:8:2"], "{rendered}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        // A confirmed cap lets it through; a zip counts one variant per value.
        let small = format!(
            "{EXP}\n[sweep]\n\"stage.train.alfa\" = [0.5, 1.0]\n\"stage.gen.beta\" = [0.1, 0.2]\n"
        );
        let registry = Registry::new().with::<Train>();
        let source = |t: &str| {
            Arc::new(SourceFile {
                display_path: "exp.toml".into(),
                text: t.to_owned(),
            })
        };
        let file = Path::new("/nonexistent/exp.toml");
        assert!(expand(
            source(&small),
            file,
            &registry,
            &[],
            &[],
            None,
            3,
            SearchResults::Nothing
        )
        .is_err());
        assert_eq!(
            expand(
                source(&small),
                file,
                &registry,
                &[],
                &[],
                None,
                4,
                SearchResults::Nothing
            )
            .unwrap()
            .variants
            .len(),
            4
        );
        let zip = expand(
            source(&small),
            file,
            &registry,
            &[],
            &[],
            Some(SweepMode::Zip),
            2,
            SearchResults::Nothing,
        );
        assert_eq!(zip.unwrap().variants.len(), 2);
    }

    fn names(s: &Sweep) -> Vec<String> {
        s.variants
            .iter()
            .map(|v| v.variant.as_ref().unwrap().name.clone())
            .collect()
    }

    /// Each error as `line:col message [help]` (or `flag@offset` for command-line errors).
    fn check_errors(text: &str, sweeps: &[&str], expected: &[&str]) {
        let errors = load(text, sweeps, None).expect_err("expected errors");
        let got: Vec<String> = errors
            .errors
            .iter()
            .map(|e| {
                let at = match &e.site {
                    ErrorSite::File(span) => {
                        let (l, c) = errors.line_col(span.start);
                        format!("{l}:{c}")
                    }
                    ErrorSite::Override { flag, span, .. } => format!("{flag}@{}", span.start),
                    ErrorSite::Nowhere => "-".into(),
                };
                let help = e
                    .help
                    .as_ref()
                    .map(|h| format!(" [{h}]"))
                    .unwrap_or_default();
                format!("{at} {}{help}", e.message)
            })
            .collect();
        assert_eq!(got, expected, "\nrendered:\n{errors}");
    }

    #[test]
    fn grid_is_the_product_first_axis_slowest_with_readable_names() {
        let text = format!(
            "{EXP}\n[sweep]\n\"stage.train.alfa\" = [0.5, 1]\nstage.train.beta = [1, 2.5]\n"
        );
        let s = load(&text, &[], None).unwrap();
        assert_eq!(
            names(&s),
            [
                "alfa-0.5_beta-1",
                "alfa-0.5_beta-2.5",
                "alfa-1_beta-1",
                "alfa-1_beta-2.5"
            ]
        );
        let v = &s.variants[2];
        assert_eq!(
            v.stage("train").unwrap().params.canonical["alfa"],
            json!(1.0)
        );
        assert_eq!(v.runs_subdir(), Path::new("exp/alfa-1_beta-1"));
        assert_eq!(s.axes[0].values, [json!(0.5), json!(1.0)]);
    }

    #[test]
    fn zip_mode_and_command_line_axes() {
        let text = format!("{EXP}\n[sweep]\nmode = \"zip\"\n\"stage.train.alfa\" = [0.5, 1]\n");
        let s = load(&text, &["stage.train.beta=3,4"], None).unwrap();
        assert_eq!(names(&s), ["alfa-0.5_beta-3", "alfa-1_beta-4"]);
        // The command line replaces a file axis with the same path, and can switch the mode.
        let s = load(
            &text,
            &["stage.train.alfa=2", "stage.train.beta=3,4"],
            Some(SweepMode::Grid),
        )
        .unwrap();
        assert_eq!(names(&s), ["alfa-2_beta-3", "alfa-2_beta-4"]);
    }

    #[test]
    fn list_values_and_clashing_labels() {
        let text = format!(
            "{EXP}\n[sweep]\n\"stage.train.loss_features\" = [[\"Conv2d_1a_3x3\"], [\"Conv2d_1a_3x3\", \"Conv2d_2a_3x3\"]]\n\"stage.gen.alfa\" = [2]\n\"stage.train.alfa\" = [3]\n"
        );
        let s = load(&text, &[], None).unwrap();
        assert_eq!(
            names(&s),
            [
                "loss_features-Conv2d_1a_3x3_gen.alfa-2_train.alfa-3",
                "loss_features-Conv2d_1a_3x3+Conv2d_2a_3x3_gen.alfa-2_train.alfa-3"
            ]
        );
    }

    #[test]
    fn strategy_zip_is_mode_zip_and_adaptive_keys_need_a_strategy() {
        let text = format!("{EXP}\n[sweep]\nstrategy = \"zip\"\n\"stage.train.alfa\" = [0.5, 1]\n\"stage.train.beta\" = [3, 4]\n");
        assert_eq!(
            names(&load(&text, &[], None).unwrap()),
            ["alfa-0.5_beta-3", "alfa-1_beta-4"]
        );
        check_errors(
            &format!("{EXP}\n[sweep]\ntrials = 4\n\"stage.train.alfa\" = [0.5, 1]\n"),
            &[],
            &["9:1 `trials` only applies to an adaptive sweep [add `strategy = \"random\"`, `\"tpe\"` or `\"halving\"`]"],
        );
        check_errors(
            &format!("{EXP}\n[sweep]\nstrategy = \"hyperband\"\n"),
            &[],
            &["9:12 unknown sweep strategy `hyperband` [expected one of the strategies: `grid`, `zip`, `random`, `tpe`, `halving`]"],
        );
    }

    #[test]
    fn no_sweep_is_one_unnamed_variant() {
        let s = load(EXP, &[], None).unwrap();
        assert!(!s.is_sweep());
        assert_eq!(s.variants.len(), 1);
        assert!(s.variants[0].variant.is_none());
    }

    #[test]
    fn bad_paths_values_and_shapes_point_at_their_spans() {
        check_errors(
            &format!("{EXP}\n[sweep]\n\"stage.train.alpha\" = [1]\n\"stage.trian.alfa\" = [1]\n\"stage.train.beta\" = [1, \"x\", -1]\n\"stage.train.alfa\" = [-1]\nfoo = 3\n"),
            &[],
            &[
                "9:1 unknown param `alpha` [did you mean `alfa`?]",
                "10:1 `[sweep]` names unknown stage `trian` [did you mean `train`?]",
                "11:26 `beta` in stage `train` (kind `train-vae`): invalid type: string \"x\", expected f64",
                "12:23 stage `train`: `alfa` must be non-negative",
                "13:7 swept param `foo` must be a list of values, found integer [write `\"foo\" = [a, b]`; to fix one value use the stage table or `--set`]",
            ],
        );
        check_errors(
            &format!("{EXP}\n[sweep]\nmode = \"zipp\"\n\"stage.train.alfa\" = []\n"),
            &["stage.train.beta=1,[2]", "train.beta=1"],
            &[
                "9:8 unknown sweep mode `zipp` [did you mean `zip`?]",
                "10:22 the sweep list of `stage.train.alfa` is empty",
                "--sweep@0 cannot sweep `train.beta` [sweep `stage.<stage>.<param>` or `experiment.seed`, e.g. `\"stage.train.alfa\" = [0.5, 1.0]`]",
                "--sweep@19 `beta` in stage `train` (kind `train-vae`): invalid type: sequence, expected f64",
            ],
        );
        check_errors(
            &format!("{EXP}\n[sweep]\nmode = \"zip\"\n\"stage.train.alfa\" = [1, 2]\n\"stage.train.beta\" = [1, 1.0, 2]\n"),
            &[],
            &[
                "11:22 a `zip` sweep needs lists of one length: `stage.train.beta` has 3 values, `stage.train.alfa` has 2 [make the lists the same length, or use `mode = \"grid\"`]",
                "11:26 `stage.train.beta` lists the value 1.0 twice",
            ],
        );
        check_errors(
            &format!("{EXP}\n[sweep]\n\"stage.train.beta\" = [1, 1.0]\n"),
            &[],
            &["9:26 `stage.train.beta` lists the value 1.0 twice"],
        );
    }

    #[test]
    fn command_line_value_errors_point_inside_the_argument() {
        check_errors(
            EXP,
            &["stage.train.beta=0.5, x"],
            &["--sweep@22 `beta` in stage `train` (kind `train-vae`): invalid type: string \"x\", expected f64"],
        );
    }

    #[test]
    fn names_are_filesystem_safe_and_stable() {
        assert_eq!(variant_name(&[("x", &json!("a/b c"))]), "x-a-b-c");
        assert_eq!(
            variant_name(&[("lr", &json!(1e-4)), ("on", &json!(true))]),
            "lr-0.0001_on-true"
        );
        let long = "y".repeat(200);
        let axes = vec![SweepAxis {
            path: "stage.a.x".into(),
            label: "x".into(),
            values: vec![json!(long), json!("a/b"), json!("a:b")],
        }];
        let n = variant_names(&axes, &[vec![0], vec![1], vec![2]]);
        assert_eq!(n[0].len(), MAX_NAME);
        assert!(n[1].starts_with("x-a-b-") && n[1] != n[2], "{n:?}");
    }
}
