//! `vaepipe run FILE`: plan (every sweep variant, as one deduplicated DAG), optionally check the
//! lock (`--locked`), execute, printing a line per stage as it starts and ends and a summary
//! (with each artifact's `metrics.json` scalars) at the end; then write `report.html` (and for a
//! sweep `sweep.json`/`.csv`/`.md`, the binary's sweep images and one report per variant).
//! With `--executor slurm` (or `[executor] kind = "slurm"`) the dirty stages go to Slurm instead
//! (`cli::slurm`): the verb returns after submitting, or with `--wait` reports like a local run.
//! What is printed and written is in `cli::output`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::output::{finish, render_event};
use super::{CliError, GlobalArgs, Hooks, SweepArgs};
use crate::cache::CacheStore;
use crate::executor::Executor;
use crate::registry::Registry;
use crate::scheduler::Event;
use crate::scheduler::{self, ExecuteOptions, Freshness, PlanOptions};
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
    /// Push what this run computes (and local hits it lacks) to the remote cache, like
    /// `[cache] push = true`.
    #[arg(long)]
    pub push: bool,
}

pub fn run(
    args: RunArgs,
    global: &GlobalArgs,
    registry: &Registry,
    hooks: &Hooks,
) -> Result<(), CliError> {
    let started = Instant::now();
    let load = |args: &RunArgs| {
        if args.locked {
            super::search::load_locked(&args.file, registry, &args.set, &args.sweep, global)
        } else {
            super::load_sweep(&args.file, registry, &args.set, &args.sweep, global)
        }
    };
    let mut sweep = load(&args)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&sweep.base)))?;
    let runs_dir = super::runs_dir(global);
    let options = PlanOptions {
        only: args.only.clone(),
        force: args.force.clone(),
    };
    let executor = Executor::new(args.executor.unwrap_or(sweep.base.executor.kind));
    let slurm_returns_early = matches!(executor, Executor::Slurm(_)) && !args.wait;

    // An adaptive sweep: run each generation whose results are missing (all its trials at once),
    // then propose again from the cache, until no generation is left; the last pass below then
    // finds every trial fresh and writes the reports. A replayed lock proposes nothing.
    let mut last_generation = None;
    let mut ran_earlier: std::collections::HashMap<String, scheduler::Outcome> = Default::default();
    while let Some(g) = sweep.search.as_ref().and_then(|s| s.next_generation) {
        if slurm_returns_early {
            break;
        }
        if last_generation == Some(g) {
            return Err(CliError::Failed(format!(
                "generation {g} ran but its objective is still unknown; does `--only` leave out the objective's stage?"
            )));
        }
        last_generation = Some(g);
        let trials = sweep
            .search
            .as_ref()
            .map(|s| {
                s.next_trials()
                    .iter()
                    .map(|t| t.name.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let sweep_plan = scheduler::plan_sweep(&sweep, &store, &runs_dir, &options)?;
        prepare_if_a_stage_runs_here(&executor, &sweep_plan, hooks)?;
        tracing::info!(
            "{}: generation {g}, trials {}",
            sweep.strategy_name(),
            trials.join(", ")
        );
        if args.locked {
            super::check_lock(&args.file, &sweep, &sweep_plan, &store)?;
        }
        let report = match &executor {
            Executor::Slurm(slurm) => {
                run_slurm(
                    slurm,
                    &args,
                    &sweep,
                    &sweep_plan,
                    &store,
                    &runs_dir,
                    global,
                    hooks,
                    started,
                )?;
                None
            }
            Executor::Local => Some(run_local(
                &args,
                global,
                &sweep,
                &sweep_plan,
                &store,
                &runs_dir,
                true,
            )?),
        };
        if let Some(report) = report {
            if report.cancelled() || !report.all_succeeded() || crate::signal::caught().is_some() {
                return finish(
                    started,
                    &sweep,
                    &sweep_plan,
                    &report,
                    &store,
                    &runs_dir,
                    hooks,
                );
            }
            for (_, outcome) in report.results {
                if let scheduler::Outcome::Ran { key, .. } = &outcome {
                    ran_earlier.insert(key.to_string(), outcome.clone());
                }
            }
        }
        sweep = load(&args)?;
    }

    let exp = &sweep.base;
    let sweep_plan = scheduler::plan_sweep(&sweep, &store, &runs_dir, &options)?;
    // Before the run's first log lines, so that a re-execution does not print them twice.
    prepare_if_a_stage_runs_here(&executor, &sweep_plan, hooks)?;
    if args.locked {
        super::check_lock(&args.file, &sweep, &sweep_plan, &store)?;
        tracing::info!("inputs and config match the lock");
    }
    if let Executor::Slurm(slurm) = &executor {
        return run_slurm(
            slurm,
            &args,
            &sweep,
            &sweep_plan,
            &store,
            &runs_dir,
            global,
            hooks,
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
    let mut report = run_local(&args, global, &sweep, &sweep_plan, &store, &runs_dir, false)?;
    // What an earlier generation of this invocation ran is reported as run, not as a hit.
    for (_, outcome) in &mut report.results {
        if let scheduler::Outcome::Hit { key, .. } = outcome {
            if let Some(ran) = ran_earlier.get(key.as_str()) {
                *outcome = ran.clone();
            }
        }
    }
    finish(
        started,
        &sweep,
        &sweep_plan,
        &report,
        &store,
        &runs_dir,
        hooks,
    )
}

/// Hands the planned sweep to Slurm (`cli::slurm`): returns once submitted, or with `--wait`
/// once the jobs are done.
#[allow(clippy::too_many_arguments)] // one call's context, passed through
fn run_slurm(
    slurm: &crate::executor::slurm::SlurmExecutor,
    args: &RunArgs,
    sweep: &crate::config::Sweep,
    sweep_plan: &scheduler::SweepPlan,
    store: &CacheStore,
    runs_dir: &std::path::Path,
    global: &GlobalArgs,
    hooks: &Hooks,
    started: Instant,
) -> Result<(), CliError> {
    let request = super::slurm::SlurmRun {
        file: &args.file,
        set: &args.set,
        sweep_args: &args.sweep,
        device: args.device.as_deref(),
        threads: args.threads,
        wait: args.wait,
    };
    super::slurm::run(
        slurm, &request, sweep, sweep_plan, store, runs_dir, global, hooks, started,
    )
}

/// A stage will execute in this process: the binary may have started without libtorch (the
/// torch-free start-up) and gets it now, possibly by re-executing itself (then this does not
/// return, and the new process plans again). Called before `run_local` and before the run
/// logs anything; a Slurm submission never loads libtorch here.
fn prepare_if_a_stage_runs_here(
    executor: &Executor,
    sweep_plan: &scheduler::SweepPlan,
    hooks: &Hooks,
) -> Result<(), CliError> {
    if matches!(executor, Executor::Local)
        && sweep_plan
            .plan
            .stages
            .iter()
            .any(|ps| matches!(ps.freshness, Freshness::Dirty(_)))
    {
        hooks
            .prepare_to_execute()
            .map_err(|e| CliError::Failed(format!("{e:#}")))?;
    }
    Ok(())
}

/// Runs the planned sweep here, with the live report; `quiet_hits` keeps an adaptive sweep's
/// earlier generations (all cache hits) out of the log.
#[allow(clippy::too_many_arguments)] // one call's context, passed through
fn run_local(
    args: &RunArgs,
    global: &GlobalArgs,
    sweep: &crate::config::Sweep,
    sweep_plan: &scheduler::SweepPlan,
    store: &CacheStore,
    runs_dir: &std::path::Path,
    quiet_hits: bool,
) -> Result<scheduler::RunReport, CliError> {
    let exp = &sweep.base;
    let cancel = crate::signal::install();
    let run_options = RunOptions {
        device: args
            .device
            .clone()
            .or_else(|| exp.device.clone())
            .unwrap_or_else(|| "auto".to_owned()),
        threads: args.threads,
        quiet: global.quiet,
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let remote = super::remote_for(global, Some(exp))?.map(|r| r.with_push(args.push || exp.push));
    if let Some(r) = &remote {
        tracing::info!(
            "remote cache: {}{}",
            r.url(),
            if r.pushes() {
                " (pushing)"
            } else {
                " (read-only)"
            }
        );
    }
    let exec = ExecuteOptions {
        run: &run_options,
        jobs,
        cancel: cancel.clone(),
        runs_dir: runs_dir.to_path_buf(),
        tool_version: super::tool_version(),
        remote: remote.as_ref(),
    };
    let experiments: Vec<&crate::config::Experiment> = sweep.variants.iter().collect();
    let report_path = std::path::absolute(runs_dir)
        .unwrap_or_else(|_| runs_dir.to_path_buf())
        .join(&exp.name)
        .join(crate::report::REPORT_HTML);
    let live = crate::report::live::LiveReport::start(sweep, sweep_plan, store, report_path);
    tracing::info!(
        "report: {} (rewritten at each training save while this runs)",
        live.path().display()
    );
    let on_event = |event: &Event| {
        let hit = matches!(
            event,
            Event::Finished {
                outcome: scheduler::Outcome::Hit { .. },
                ..
            }
        );
        if !(quiet_hits && hit) {
            render_event(event);
        }
        live.observe(event);
    };
    Ok(scheduler::execute_variants(
        &experiments,
        &sweep_plan.plan,
        store,
        &exec,
        &on_event,
    ))
}
