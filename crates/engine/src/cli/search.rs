//! What the verbs share for adaptive sweeps: loading one with its known results (each
//! generation's variants planned against the cache, the objective read from the committed
//! entry's `metrics.json`), replaying a lock's trial list (`run --locked`), and the text `plan`
//! prints about the trials: where each came from, what it scored, why it stopped, and which
//! generation comes next.

use std::fmt::Write as _;
use std::path::Path;

use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::CacheStore;
use crate::config::sweep::search::{short_number, TrialResult};
use crate::config::{Experiment, Looked, SearchResults, Sweep};
use crate::graph::StageGraph;
use crate::registry::Registry;
use crate::scheduler::{self, PlanOptions};

/// Reloads an adaptive `first` (loaded knowing nothing) with what the cache knows: every
/// generation whose trials all have results, then the next one.
pub(super) fn with_results(
    file: &Path,
    registry: &Registry,
    set: &[String],
    args: &SweepArgs,
    global: &GlobalArgs,
    first: Sweep,
) -> Result<Sweep, CliError> {
    let Some(search) = &first.search else {
        return Ok(first);
    };
    let (stage, metric) = search
        .objective
        .split_once('.')
        .map(|(s, m)| (s.to_owned(), m.to_owned()))
        .unwrap_or_default();
    let store = CacheStore::open(&super::cache_dir(global, Some(&first.base)))?;
    let runs_dir = super::runs_dir(global);
    let mut lookup = |exps: &[Experiment]| -> Vec<Looked> {
        exps.iter()
            .map(|exp| objective_of(exp, &store, &runs_dir, &stage, &metric))
            .collect()
    };
    load(
        file,
        registry,
        set,
        args,
        SearchResults::Lookup(&mut lookup),
    )
}

/// Loads the file with its `--set`s and `--sweep`s, and `results` for an adaptive sweep.
pub(super) fn load(
    file: &Path,
    registry: &Registry,
    set: &[String],
    args: &SweepArgs,
    results: SearchResults<'_>,
) -> Result<Sweep, CliError> {
    Ok(crate::config::load_sweep_searching(
        file,
        registry,
        set,
        &args.sweep,
        args.sweep_mode,
        args.max_variants
            .unwrap_or(crate::config::DEFAULT_MAX_VARIANTS),
        results,
    )?)
}

/// What the cache says about one trial's objective.
fn objective_of(
    exp: &Experiment,
    store: &CacheStore,
    runs_dir: &Path,
    stage: &str,
    metric: &str,
) -> Looked {
    let graph = StageGraph::new(exp);
    let Ok(plan) = scheduler::plan(exp, &graph, store, runs_dir, &PlanOptions::default()) else {
        return Looked::Unknown;
    };
    let Some(ps) = plan.stages.iter().find(|s| s.name == stage) else {
        return Looked::Unknown;
    };
    let Some(artifact) = store.get(&ps.key) else {
        return Looked::Unknown;
    };
    let metrics = crate::report::read_metrics(&artifact.dir);
    match metrics.get(metric).and_then(serde_json::Value::as_f64) {
        Some(value) => Looked::Value(TrialResult {
            value,
            key: ps.key.to_string(),
        }),
        None => Looked::NoMetric {
            written: metrics
                .iter()
                .filter(|(_, v)| v.is_number())
                .map(|(k, _)| k.clone())
                .collect(),
        },
    }
}

/// `run --locked`: an adaptive sweep replays the lock's trial list instead of proposing.
pub(super) fn load_locked(
    file: &Path,
    registry: &Registry,
    set: &[String],
    args: &SweepArgs,
    global: &GlobalArgs,
) -> Result<Sweep, CliError> {
    let path = crate::lock::lock_path(file);
    let trials = match crate::lock::LockFile::read(&path) {
        Ok(lock) => lock.fixed_trials(),
        Err(_) => Vec::new(), // `check_lock` reports a missing or bad lock
    };
    if trials.is_empty() {
        return super::load_sweep(file, registry, set, args, global);
    }
    load(file, registry, set, args, SearchResults::Replay(&trials))
}

/// The lines `plan` prints for an adaptive sweep: a header, one line per trial (name, values,
/// objective or `pending`, origin, stop reason), and what runs next.
pub(super) fn render_trials(sweep: &Sweep) -> String {
    let Some(search) = &sweep.search else {
        return String::new();
    };
    let mut out = String::new();
    let known = search
        .trials
        .iter()
        .filter(|t| t.objective.is_some())
        .count();
    let _ = writeln!(
        out,
        "search: {} ({} {}), {} trial{} known{}",
        search.strategy.as_str(),
        match search.goal {
            crate::config::sweep::search::Goal::Max => "max",
            crate::config::sweep::search::Goal::Min => "min",
        },
        search.objective,
        known,
        if known == 1 { "" } else { "s" },
        if search.replayed {
            ", replaying the lock's trial list"
        } else {
            ""
        }
    );
    let width = search
        .trials
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0);
    for (t, exp) in search.trials.iter().zip(&sweep.variants) {
        let values: Vec<String> = exp
            .variant
            .iter()
            .flat_map(|v| v.values.iter())
            .map(|(path, v)| {
                let label = sweep
                    .axes
                    .iter()
                    .find(|a| a.path == *path)
                    .map_or(path.as_str(), |a| a.label.as_str());
                format!("{label}={}", crate::config::sweep::display_value(v, "+"))
            })
            .collect();
        let score = t
            .objective
            .map_or_else(|| "pending".to_owned(), short_number);
        let stop = t
            .stop_reason
            .as_ref()
            .map(|r| format!("; stopped: {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:width$}  {score:>8}  {}  ({}{stop})",
            t.name,
            values.join(" "),
            t.origin
        );
    }
    let next = search.next_trials();
    match (next.first(), next.last()) {
        (Some(a), Some(b)) => {
            let _ = writeln!(
                out,
                "next: generation {} ({} trial{}: {}–{})",
                a.generation,
                next.len(),
                if next.len() == 1 { "" } else { "s" },
                a.name,
                b.name
            );
        }
        _ if search.replayed => {}
        _ => {
            let _ = writeln!(out, "next: nothing; the search is finished");
        }
    }
    out
}
