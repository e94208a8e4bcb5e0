//! `vaepipe run FILE`: plan (every sweep variant, as one deduplicated DAG), optionally check the
//! lock (`--locked`), execute, printing a line per stage as it starts and ends and a summary
//! (with each artifact's `metrics.json` scalars) at the end; then write `report.html` (and for a
//! sweep `sweep.json`/`.csv`/`.md`, the binary's sweep images and one report per variant).
//! With `--executor slurm` (or `[executor] kind = "slurm"`) the dirty stages go to Slurm instead
//! (`cli::slurm`): the verb returns after submitting, or with `--wait` reports like a local run.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::CacheStore;
use crate::registry::Registry;
use crate::scheduler::{self, Event, ExecuteOptions, Freshness, Outcome, PlanOptions};
use crate::stage::RunOptions;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a param: `stage.<stage>.<param>=<value>` (type-checked), or `experiment.seed=<n>`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Refuse to run when an input or the resolved config differs from `FILE.lock`.
    #[arg(long)]
    pub locked: bool,
    /// Run only these stages and what they need upstream.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Rerun these stages even when their entry exists (replacing it).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Stages to run at once [default: the number of CPUs]. Accelerator stages always run alone.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// `auto`, `cpu`, `cuda` or `cuda:N` [default: the experiment's `device`, else `auto`]. Not in keys.
    #[arg(long)]
    pub device: Option<String>,
    /// Intra-op threads for numeric work. Not in keys.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where dirty stages run: `local` (threads here) or `slurm` (one `sbatch` job per dirty
    /// stage, `afterok` on its upstream jobs) [default: the file's `[executor] kind`, else local].
    #[arg(long, value_enum, value_name = "EXECUTOR")]
    pub executor: Option<crate::executor::ExecutorKind>,
    /// With `--executor slurm`: wait for the jobs, then report like a local run (exit 1 if one
    /// failed). Without it, `run` returns once the jobs are submitted.
    #[arg(long)]
    pub wait: bool,
}

pub fn run(args: RunArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let started = Instant::now();
    let sweep = super::load_sweep(&args.file, registry, &args.set, &args.sweep)?;
    let exp = &sweep.base;
    let store = CacheStore::open(&super::cache_dir(global, Some(exp)))?;
    let runs_dir = super::runs_dir(global);
    let options = PlanOptions {
        only: args.only.clone(),
        force: args.force.clone(),
    };
    let sweep_plan = scheduler::plan_sweep(&sweep, &store, &runs_dir, &options)?;
    if args.locked {
        super::check_lock(&args.file, &sweep, &sweep_plan, &store)?;
        tracing::info!("inputs and config match the lock");
    }
    let executor = args.executor.unwrap_or(exp.executor.kind);
    if executor == crate::executor::ExecutorKind::Slurm {
        return super::slurm::submit(
            &args,
            &sweep,
            &sweep_plan,
            &store,
            &runs_dir,
            global,
            registry,
            started,
        );
    }
    if args.wait {
        tracing::debug!("`--wait` only matters with `--executor slurm`; a local run always waits");
    }
    let plan = &sweep_plan.plan;
    if sweep.is_sweep() {
        let total: usize = sweep_plan.variant_stages.iter().map(Vec::len).sum();
        tracing::info!(
            "sweep: {} variants, {} distinct stages of {total}",
            sweep.variants.len(),
            plan.stages.len()
        );
    }
    for set in &exp.overrides {
        tracing::info!("with --set {set}");
    }
    for ps in &plan.stages {
        if let Freshness::Dirty(reasons) = &ps.freshness {
            let text: Vec<String> = reasons.iter().map(|r| r.present()).collect();
            tracing::debug!("stage `{}` is dirty: {}", ps.name, text.join("; "));
        }
    }

    let cancel = crate::signal::install();
    let run_options = RunOptions {
        device: args
            .device
            .or_else(|| exp.device.clone())
            .unwrap_or_else(|| "auto".to_owned()),
        threads: args.threads,
        quiet: global.quiet,
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let exec = ExecuteOptions {
        run: &run_options,
        jobs,
        cancel: cancel.clone(),
        runs_dir: runs_dir.clone(),
        tool_version: super::tool_version(),
    };
    let experiments: Vec<&crate::config::Experiment> = sweep.variants.iter().collect();
    let report = scheduler::execute_variants(&experiments, plan, &store, &exec, &render_event);
    finish(
        started,
        &sweep,
        &sweep_plan,
        &report,
        &store,
        &runs_dir,
        registry,
    )
}

/// Prints each stage's link and metrics and the summary line, writes the reports, and turns the
/// outcomes into the verb's result (shared with `run --executor slurm --wait`).
pub(super) fn finish(
    started: Instant,
    sweep: &crate::config::Sweep,
    sweep_plan: &scheduler::SweepPlan,
    report: &scheduler::RunReport,
    store: &CacheStore,
    runs_dir: &std::path::Path,
    registry: &Registry,
) -> Result<(), CliError> {
    let exp = &sweep.base;
    let plan = &sweep_plan.plan;
    let (mut ran, mut hit, mut bad) = (0, 0, 0);
    for ((name, outcome), ps) in report.results.iter().zip(&plan.stages) {
        match outcome {
            Outcome::Ran { .. } => ran += 1,
            Outcome::Hit { .. } => hit += 1,
            _ => bad += 1,
        }
        if let Some(dir) = outcome.dir() {
            let metrics = metrics_summary(&dir.join("metrics.json"));
            let link = runs_dir.join(ps.links.last().cloned().unwrap_or_default());
            let metrics = if metrics.is_empty() {
                String::new()
            } else {
                format!("  {metrics}")
            };
            println!("{name}: {}{metrics}", link.display());
        }
    }
    let variants = if sweep.is_sweep() {
        format!(" ({} variants)", sweep.variants.len())
    } else {
        String::new()
    };
    println!(
        "{}: {ran} ran, {hit} fresh, {bad} not completed in {:.2}s{variants}",
        exp.name,
        started.elapsed().as_secs_f64()
    );
    let written = write_outputs(sweep, sweep_plan, report, store, runs_dir, registry);
    if report.cancelled() || crate::signal::caught().is_some() {
        return Err(CliError::Interrupted);
    }
    if !report.all_succeeded() {
        let failed: Vec<&str> = report
            .results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(CliError::Failed(format!(
            "stage{} {} failed; see the errors above",
            if failed.len() == 1 { "" } else { "s" },
            failed
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    written
}

/// `report.html` for the run; for a sweep also `sweep.json`/`.csv`/`.md`, the binary's sweep
/// images (its hook) and a `report.html` per variant. Prints where they are.
fn write_outputs(
    sweep: &crate::config::Sweep,
    plan: &scheduler::SweepPlan,
    report: &scheduler::RunReport,
    store: &CacheStore,
    runs_dir: &std::path::Path,
    registry: &Registry,
) -> Result<(), CliError> {
    use crate::report::{self, html};
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        CliError::Failed(format!("cannot write {what}: {e}"))
    };
    let runs_abs = std::path::absolute(runs_dir).unwrap_or_else(|_| runs_dir.to_path_buf());
    let exp_dir = runs_abs.join(&sweep.base.name);
    std::fs::create_dir_all(&exp_dir).map_err(|e| failed("the runs directory", &e))?;
    let shown = runs_dir.join(&sweep.base.name);
    let summary = report::summarize(sweep, plan, Some(report), store, &runs_abs);
    let mut images = Vec::new();
    let mut hook_error = None;
    if sweep.is_sweep() {
        report::write_sweep_files(&summary, &exp_dir).map_err(|e| failed("the sweep table", &e))?;
        println!("sweep table: {}", shown.join(report::SWEEP_CSV).display());
        if let Some(hook) = registry.sweep_hook() {
            match hook(&summary, &exp_dir) {
                Ok(made) => images = made,
                Err(e) => {
                    tracing::error!("building the sweep's images failed: {e:#}");
                    hook_error = Some(format!("building the sweep's images failed: {e:#}"));
                }
            }
        }
        for (v, variant) in summary.variants.iter().enumerate() {
            let page = html::Page {
                title: format!("{} / {}", sweep.base.name, variant.name),
                subtitle: variant_subtitle(variant),
                nodes: html::nodes(plan, Some(report), store, Some(v)),
                ..html::Page::default()
            };
            html::write(&page, &variant.dir.join(report::REPORT_HTML))
                .map_err(|e| failed("a variant's report", &e))?;
        }
    }
    let page = html::Page {
        title: sweep.base.name.clone(),
        subtitle: format!(
            "{} · {}{}",
            sweep.base.file.display(),
            crate::cache::manifest::rfc3339(std::time::SystemTime::now()),
            if sweep.is_sweep() {
                format!(
                    " · {} variants ({})",
                    sweep.variants.len(),
                    sweep.mode.as_str()
                )
            } else {
                String::new()
            }
        ),
        nodes: html::nodes(plan, Some(report), store, None),
        sweep: sweep.is_sweep().then_some(&summary),
        images,
    };
    html::write(&page, &exp_dir.join(report::REPORT_HTML)).map_err(|e| failed("the report", &e))?;
    println!("report: {}", shown.join(report::REPORT_HTML).display());
    match hook_error {
        Some(e) => Err(CliError::Failed(e)),
        None => Ok(()),
    }
}

fn variant_subtitle(v: &crate::report::VariantSummary) -> String {
    v.values
        .iter()
        .map(|(k, x)| format!("{k} = {x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn render_event(event: &Event) {
    match event {
        Event::Waiting { stage, key } => tracing::info!(
            "waiting for another vaepipe run holding `{stage}` (key {}…)",
            key.short()
        ),
        Event::Started { stage, key } => {
            tracing::info!("stage `{stage}` started (miss, key {}…)", key.short())
        }
        Event::Finished {
            stage,
            outcome,
            elapsed,
        } => match outcome {
            Outcome::Hit { key, .. } => {
                tracing::info!(
                    "stage `{stage}` fresh (hit, key {}…) in {:.2}s",
                    key.short(),
                    elapsed.as_secs_f64()
                )
            }
            Outcome::Ran { key, .. } => {
                tracing::info!(
                    "stage `{stage}` done (miss, key {}…) in {:.2}s",
                    key.short(),
                    elapsed.as_secs_f64()
                )
            }
            Outcome::Failed { error } => tracing::error!("stage `{stage}` failed: {error}"),
            Outcome::Skipped { because } => tracing::warn!("stage `{stage}` skipped: {because}"),
            Outcome::Cancelled => {
                tracing::warn!("stage `{stage}` interrupted; its partial work is kept for a resume")
            }
        },
    }
}

/// First Ctrl-C/SIGTERM sets `cancel`; a second one exits at once (see `signal.rs`).
pub(super) fn install_signal_handlers(cancel: &Arc<AtomicBool>) {
    crate::signal::install_for(cancel);
}

/// `name=value` for each top-level scalar of a `metrics.json`, or "" when there is none.
fn metrics_summary(path: &std::path::Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text)
    else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (k, v) in &map {
        match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => parts.push(format!("{k}={}", format_float(f))),
                _ => parts.push(format!("{k}={n}")),
            },
            serde_json::Value::Bool(b) => parts.push(format!("{k}={b}")),
            serde_json::Value::String(s) if s.len() <= 40 => parts.push(format!("{k}={s}")),
            _ => {}
        }
    }
    parts.join(" ")
}

fn format_float(f: f64) -> String {
    if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e6) {
        format!("{f:.3e}")
    } else {
        format!("{:.4}", f)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}
