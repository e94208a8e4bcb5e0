//! An adaptive `[sweep]` expanded into variants: the trials known so far (each generation whose
//! results are all in the cache), then the next generation, or a locked trial list replayed as it
//! is. Where the results come from is the caller's business ([`SearchResults`]): the CLI plans
//! each generation's variants against the cache and reads the objective from the committed
//! entry's `metrics.json`; the config layer sees only numbers.
//!
//! Each trial is resolved exactly like a grid variant: its values go through the kind's params as
//! a `--set` would, so a searched value that the kind rejects is an error at its distribution.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::search::{self, SearchSpec, Trial, TrialResult};
use super::{assign_labels, typed_value, Sweep, SweepAxis, SweepMode};
use crate::config::error::{suggestion, ConfigError, ConfigErrors, SourceFile};
use crate::config::raw::RawExperiment;
use crate::config::resolve::{
    finish, resolve_raw, Experiment, Origin, Override, OverrideTarget, VariantInfo,
};
use crate::registry::Registry;

/// What an adaptive sweep's trials are known to have scored.
pub enum SearchResults<'a> {
    /// Nothing known: only the first generation.
    Nothing,
    /// Each generation's experiments → what the cache says about each.
    Lookup(&'a mut dyn FnMut(&[Experiment]) -> Vec<Looked>),
    /// Exactly these trials, proposed by an earlier run (`run --locked`).
    Replay(&'a [FixedTrial]),
}

/// What the cache says about one trial.
#[derive(Debug, Clone, PartialEq)]
pub enum Looked {
    /// Not run (or not finished) yet.
    Unknown,
    Value(TrialResult),
    /// The objective stage is committed but wrote no such number; these are the ones it wrote.
    NoMetric {
        written: Vec<String>,
    },
}

/// A trial as a lock records it.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedTrial {
    pub name: String,
    pub generation: usize,
    pub rung: Option<usize>,
    pub origin: String,
    pub stop_reason: Option<String>,
    /// Path → value, as the trial was run.
    pub values: Vec<(String, Value)>,
}

/// The explanation of an adaptive sweep, one [`TrialInfo`] per variant.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchInfo {
    pub strategy: search::Strategy,
    pub objective: String,
    pub goal: search::Goal,
    pub trials: Vec<TrialInfo>,
    /// The generation whose results are not all known yet (its trials are the last ones);
    /// `None` when the search is finished (or replayed).
    pub next_generation: Option<usize>,
    /// True when the trials came from a lock, not from proposals.
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrialInfo {
    pub name: String,
    pub index: usize,
    pub generation: usize,
    pub rung: Option<usize>,
    pub origin: String,
    /// Why a later generation did not continue it ("rung 1: … < cutoff …, rank 9 of 16").
    pub stop_reason: Option<String>,
    /// Its objective value, when known.
    pub objective: Option<f64>,
}

impl SearchInfo {
    /// `t004`–`t007`: the trials of the next generation, when there is one.
    pub fn next_trials(&self) -> Vec<&TrialInfo> {
        match self.next_generation {
            Some(g) => self.trials.iter().filter(|t| t.generation == g).collect(),
            None => Vec::new(),
        }
    }
}

/// Everything [`expand`] needs from the file.
pub(super) struct Context<'a, 's> {
    pub raw: &'a RawExperiment<'s>,
    pub source: Arc<SourceFile>,
    pub file: &'a Path,
    pub registry: &'a Registry,
    pub sets: &'a [Override],
    pub sweep_args: &'a [String],
    pub max_variants: usize,
    pub metrics: Option<Vec<String>>,
}

/// A searched (or budget) path with where to point its errors.
struct Target {
    path: String,
    target: OverrideTarget,
    key_span: Range<usize>,
    value_span: Range<usize>,
}

impl Target {
    fn set(&self, value: Value) -> Override {
        Override {
            origin: Origin::SweepTable,
            target: self.target.clone(),
            value,
            key_span: self.key_span.clone(),
            value_span: self.value_span.clone(),
        }
    }
}

pub(super) fn expand(
    cx: Context<'_, '_>,
    spec: SearchSpec,
    mut errors: Vec<ConfigError>,
    results: SearchResults<'_>,
) -> Result<Sweep, ConfigErrors> {
    let table_span = cx
        .raw
        .sweep
        .as_ref()
        .map(|s| s.span.clone())
        .unwrap_or_default();
    for arg in cx.sweep_args {
        errors.push(ConfigError {
            message: format!(
                "`--sweep` adds a value list, but this is a `{}` sweep",
                spec.strategy.as_str()
            ),
            site: crate::config::error::ErrorSite::Override {
                flag: "--sweep",
                arg: arg.clone(),
                span: 0..arg.len(),
            },
            help: Some("search the param in `[sweep] space`, or use `--set` to fix it".into()),
        });
    }
    let most = spec.max_trials();
    if most > cx.max_variants && !matches!(results, SearchResults::Replay(_)) {
        errors.push(
            ConfigError::at(
                spec.trials_span.clone(),
                format!(
                    "the `{}` sweep can run up to {most} trials, more than the {} allowed without confirmation",
                    spec.strategy.as_str(),
                    cx.max_variants
                ),
            )
            .with_help(format!("pass `--max-variants {most}` to allow them, or lower `trials`")),
        );
        return finish(cx.source, errors, None);
    }
    let resolve = |sets: &[Override], errors: &mut Vec<ConfigError>| {
        resolve_raw(cx.raw, &cx.source, cx.file, cx.registry, sets, errors)
    };
    let Some(base) = resolve(cx.sets, &mut errors) else {
        return finish(cx.source, errors, None);
    };

    // Every searched path, checked with a few values of its distribution.
    let mut targets: Vec<Target> = Vec::new();
    let stage_names = base.stage_names();
    let check_path = |path: &str,
                      key_span: &Range<usize>,
                      value_span: &Range<usize>,
                      errors: &mut Vec<ConfigError>|
     -> Option<Target> {
        let Some(target) = OverrideTarget::parse(path) else {
            errors.push(
                ConfigError::at(key_span.clone(), format!("cannot search `{path}`"))
                    .with_help("search `stage.<stage>.<param>` or `experiment.seed`"),
            );
            return None;
        };
        if let OverrideTarget::Stage { stage, .. } = &target {
            if !stage_names.contains(&stage.as_str()) {
                errors.push(
                    ConfigError::at(
                        key_span.clone(),
                        format!("`[sweep]` names unknown stage `{stage}`"),
                    )
                    .with_help_opt(suggestion(stage, &stage_names, "stages")),
                );
                return None;
            }
        }
        if let Some(set) = cx.sets.iter().find(|s| s.target == target) {
            errors.push(
                set.error_on_key(format!("`{path}` is both set with `--set` and searched"))
                    .with_help("drop the `--set`, or the param from `space`"),
            );
        }
        Some(Target {
            path: path.to_owned(),
            target,
            key_span: key_span.clone(),
            value_span: value_span.clone(),
        })
    };
    for p in &spec.params {
        let Some(t) = check_path(&p.path, &p.path_span, &p.span, &mut errors) else {
            continue;
        };
        for probe in p.distribution.probes() {
            let mut with = cx.sets.to_vec();
            with.push(t.set(probe));
            let _ = resolve(&with, &mut errors);
        }
        targets.push(t);
    }
    let mut budget_target = None;
    if let Some(b) = &spec.budget {
        if let Some(t) = check_path(&b.path, &b.path_span, &b.min_span, &mut errors) {
            let mut with = cx.sets.to_vec();
            with.push(t.set(Value::from(b.min)));
            if let Some(exp) = resolve(&with, &mut errors) {
                let typed = typed_value(&exp, &t.target);
                let integer = matches!(t.target, OverrideTarget::Stage { .. })
                    && typed.as_ref().is_some_and(|v| v.is_u64() || v.is_i64());
                if !integer {
                    errors.push(
                        ConfigError::at(
                            b.path_span.clone(),
                            format!(
                                "the budget `{}` must be an integer param of a stage; it resolves to {}",
                                b.path,
                                typed.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
                            ),
                        )
                        .with_help("budget an integer param such as `stage.train.max_steps`"),
                    );
                }
            }
            let mut with = cx.sets.to_vec();
            with.push(t.set(Value::from(b.max)));
            let _ = resolve(&with, &mut errors);
            budget_target = Some(t);
        }
    }
    if !errors.is_empty() || targets.len() != spec.params.len() {
        return finish(cx.source, errors, None);
    }

    let resolve_trial = |values: &[(String, Value)], errors: &mut Vec<ConfigError>| {
        let mut with = cx.sets.to_vec();
        for (path, v) in values {
            if let Some(t) = targets
                .iter()
                .chain(budget_target.as_ref())
                .find(|t| t.path == *path)
            {
                with.push(t.set(v.clone()));
            }
        }
        resolve(&with, errors)
    };
    let labelled = |t: &Trial| -> Vec<(String, Value)> {
        let mut values: Vec<(String, Value)> = spec
            .params
            .iter()
            .map(|p| p.path.clone())
            .zip(t.values.iter().cloned())
            .collect();
        if let (Some(b), Some(budget)) = (&spec.budget, t.budget) {
            values.push((b.path.clone(), Value::from(budget)));
        }
        values
    };

    let mut infos: Vec<TrialInfo> = Vec::new();
    let mut variants: Vec<Experiment> = Vec::new();
    let mut next_generation = None;
    let replayed = matches!(results, SearchResults::Replay(_));
    match results {
        SearchResults::Replay(fixed) => {
            for (index, f) in fixed.iter().enumerate() {
                let known: Vec<&str> = targets
                    .iter()
                    .chain(budget_target.as_ref())
                    .map(|t| t.path.as_str())
                    .collect();
                if let Some((path, _)) = f.values.iter().find(|(p, _)| !known.contains(&p.as_str()))
                {
                    errors.push(ConfigError::at(table_span.clone(), format!("the lock's trial `{}` sets `{path}`, which this sweep does not search", f.name)).with_help("run `vaepipe lock` again, or restore the sweep the lock was made from"));
                    continue;
                }
                let Some(mut exp) = resolve_trial(&f.values, &mut errors) else {
                    continue;
                };
                exp.variant = Some(VariantInfo {
                    name: f.name.clone(),
                    values: f.values.clone(),
                });
                variants.push(exp);
                infos.push(TrialInfo {
                    name: f.name.clone(),
                    index,
                    generation: f.generation,
                    rung: f.rung,
                    origin: f.origin.clone(),
                    stop_reason: f.stop_reason.clone(),
                    objective: None,
                });
            }
        }
        SearchResults::Nothing | SearchResults::Lookup(_) => {
            let mut lookup = match results {
                SearchResults::Lookup(f) => Some(f),
                _ => None,
            };
            let mut history: Vec<(Trial, TrialResult)> = Vec::new();
            let mut stops: BTreeMap<usize, String> = BTreeMap::new();
            for g in 0.. {
                let generation = search::propose(&spec, g, &history);
                stops.extend(generation.stopped);
                if generation.trials.is_empty() {
                    break;
                }
                let mut exps = Vec::new();
                for t in &generation.trials {
                    let values = labelled(t);
                    let Some(mut exp) = resolve_trial(&values, &mut errors) else {
                        continue;
                    };
                    exp.variant = Some(VariantInfo {
                        name: t.name(),
                        values,
                    });
                    exps.push(exp);
                }
                if !errors.is_empty() {
                    return finish(cx.source, errors, None);
                }
                let looked = match lookup.as_mut() {
                    Some(f) => f(&exps),
                    None => vec![Looked::Unknown; exps.len()],
                };
                let mut complete = true;
                for ((t, exp), l) in generation.trials.into_iter().zip(exps).zip(looked) {
                    let objective = match l {
                        Looked::Value(r) => {
                            let v = r.value;
                            history.push((t.clone(), r));
                            Some(v)
                        }
                        Looked::Unknown => {
                            complete = false;
                            None
                        }
                        Looked::NoMetric { written } => {
                            complete = false;
                            let names: Vec<&str> = written.iter().map(String::as_str).collect();
                            errors.push(
                                ConfigError::at(
                                    spec.objective.span.clone(),
                                    format!(
                                        "stage `{}` wrote no number `{}` to its metrics.json (trial {})",
                                        spec.objective.stage,
                                        spec.objective.metric,
                                        t.name()
                                    ),
                                )
                                .with_help_opt(if names.is_empty() {
                                    Some("that stage writes no metrics; pick a stage that does".into())
                                } else {
                                    suggestion(&spec.objective.metric, &names, "metrics it wrote")
                                }),
                            );
                            None
                        }
                    };
                    infos.push(TrialInfo {
                        name: t.name(),
                        index: t.index,
                        generation: t.generation,
                        rung: t.rung,
                        origin: t.origin.clone(),
                        stop_reason: None,
                        objective,
                    });
                    variants.push(exp);
                }
                if !errors.is_empty() {
                    return finish(cx.source, errors, None);
                }
                if !complete {
                    next_generation = Some(g);
                    break;
                }
            }
            for info in &mut infos {
                info.stop_reason = stops.get(&info.index).cloned();
            }
        }
    }
    if !errors.is_empty() {
        return finish(cx.source, errors, None);
    }

    // The searched params as axes (their values in trial order), so tables show them.
    let mut axes: Vec<SweepAxis> = targets
        .iter()
        .chain(budget_target.as_ref())
        .map(|t| SweepAxis {
            path: t.path.clone(),
            label: String::new(),
            values: Vec::new(),
        })
        .collect();
    for exp in &variants {
        for (path, v) in exp.variant.iter().flat_map(|i| i.values.iter()) {
            if let Some(axis) = axes.iter_mut().find(|a| a.path == *path) {
                if !axis.values.contains(v) {
                    axis.values.push(v.clone());
                }
            }
        }
    }
    assign_labels(&mut axes);
    let search = SearchInfo {
        strategy: spec.strategy,
        objective: spec.objective.text(),
        goal: spec.goal,
        trials: infos,
        next_generation: if replayed { None } else { next_generation },
        replayed,
    };
    let sweep = Sweep {
        base,
        mode: SweepMode::Grid,
        axes,
        metrics: cx.metrics,
        variants,
        search: Some(search),
    };
    finish(cx.source, errors, Some(sweep))
}
