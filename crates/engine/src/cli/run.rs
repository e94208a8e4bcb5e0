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
    let executor = Executor::new(args.executor.unwrap_or(exp.executor.kind));
    if let Executor::Slurm(slurm) = &executor {
        let request = super::slurm::SlurmRun {
            file: &args.file,
            set: &args.set,
            sweep_args: &args.sweep,
            device: args.device.as_deref(),
            threads: args.threads,
            wait: args.wait,
        };
        return super::slurm::run(
            slurm,
            &request,
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
        runs_dir: runs_dir.clone(),
        tool_version: super::tool_version(),
        remote: remote.as_ref(),
    };
    let experiments: Vec<&crate::config::Experiment> = sweep.variants.iter().collect();
    let report_path = std::path::absolute(&runs_dir)
        .unwrap_or_else(|_| runs_dir.clone())
        .join(&exp.name)
        .join(crate::report::REPORT_HTML);
    let live = crate::report::live::LiveReport::start(&sweep, &sweep_plan, &store, report_path);
    tracing::info!(
        "report: {} (rewritten at each training save while this runs)",
        live.path().display()
    );
    let on_event = |event: &Event| {
        render_event(event);
        live.observe(event);
    };
    let report = scheduler::execute_variants(&experiments, plan, &store, &exec, &on_event);
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
