//! The Slurm executor's verbs: `run --executor slurm` ([`run`]: flags → a submission to
//! [`crate::executor::slurm::SlurmExecutor`], which does the work), `status`, `cancel`, and the
//! hidden `run-stage` each job runs. A job runs `<this binary> run-stage FILE --stage S --key K` with
//! the same `--set`/`--sweep`: it re-resolves the experiment, refuses (exit 2) when the stage's
//! key is no longer `K` (the file changed since submission), checks that its upstream entries
//! exist, and runs the stage through the scheduler's lock → run → atomic commit → link path.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::output::{finish, install_signal_handlers, render_event, render_slurm_event};
use super::{CliError, GlobalArgs, Hooks, SweepArgs};
use crate::cache::CacheStore;
use crate::config::Sweep;
use crate::executor::jobs;
use crate::executor::slurm::{
    Interrupted, JobCommand, JobState, NodeState, SlurmExecutor, Submission, LOG_TAIL_LINES,
};
use crate::executor::slurm_commands::SlurmCommands;
use crate::registry::Registry;
use crate::scheduler::{self, ExecuteOptions, Outcome, Plan, PlanOptions};
use crate::stage::RunOptions;

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// The same `--set`s as the run (they change keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RunStageArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// The stage (its name in the plan, for messages).
    #[arg(long)]
    pub stage: String,
    /// The key the stage had when it was submitted; the job refuses to run another.
    #[arg(long)]
    pub key: String,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Recompute even when the entry exists (`run --force`).
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub threads: Option<usize>,
}

/// What `run --executor slurm` passes on from its flags.
pub(super) struct SlurmRun<'a> {
    pub file: &'a Path,
    pub set: &'a [String],
    pub sweep_args: &'a SweepArgs,
    pub device: Option<&'a str>,
    pub threads: Option<usize>,
    pub wait: bool,
}

/// `run --executor slurm`: submits every dirty stage; with `--wait` waits and reports like a
/// local run.
#[allow(clippy::too_many_arguments)] // the run's pieces, passed on once
pub(super) fn run(
    slurm: &SlurmExecutor,
    request: &SlurmRun<'_>,
    sweep: &Sweep,
    sweep_plan: &scheduler::SweepPlan,
    store: &CacheStore,
    runs_dir: &Path,
    global: &GlobalArgs,
    hooks: &Hooks,
    started: Instant,
) -> Result<(), CliError> {
    let exp = &sweep.base;
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::Failed(format!("{what}: {e}"));
    let exe = std::env::current_exe().map_err(|e| failed("cannot find this program's path", &e))?;
    let cwd =
        std::env::current_dir().map_err(|e| failed("cannot read the working directory", &e))?;
    let runs_abs = std::path::absolute(runs_dir).unwrap_or_else(|_| runs_dir.to_path_buf());
    let remote = super::remote_for(global, Some(exp))?;
    let submission = Submission {
        remote: remote.as_ref(),
        experiment: &exp.name,
        file: &exp.file,
        config: &exp.executor,
        plan: &sweep_plan.plan,
        store,
        runs_dir: &runs_abs,
        chdir: cwd,
        command: job_command(&exe, store.root(), &runs_abs, &exp.file, global, request),
    };
    let done = slurm
        .submit(&submission, &render_slurm_event)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let queued = if done.n_queued > 0 {
        format!(", {} already queued", done.n_queued)
    } else {
        String::new()
    };
    println!(
        "{}: {} submitted to Slurm, {} fresh{queued}",
        exp.name, done.n_submitted, done.n_fresh
    );
    let file = request.file.display();
    if !request.wait {
        if done.n_submitted + done.n_queued > 0 {
            println!("follow with `vaepipe status {file}`; cancel with `vaepipe cancel {file}`");
        }
        return Ok(());
    }
    let cancel = Arc::new(AtomicBool::new(false));
    install_signal_handlers(&cancel);
    let poll = std::env::var("VAEPIPE_SLURM_POLL_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000u64);
    let report = slurm
        .wait(
            &submission,
            &done,
            &cancel,
            Duration::from_millis(poll),
            &render_slurm_event,
        )
        .map_err(|Interrupted| {
            eprintln!(
                "stopped waiting; the jobs keep running (`vaepipe status {file}`, `vaepipe cancel {file}`)"
            );
            CliError::Interrupted
        })?;
    for (name, outcome) in &report.results {
        if let Outcome::Failed { error } = outcome {
            tracing::error!("stage `{name}` failed: {error}");
        }
    }
    finish(started, sweep, sweep_plan, &report, store, runs_dir, hooks)
}

/// The command line a stage's job runs: this binary, the cache and runs dirs, `run-stage FILE`,
/// and the flags that change keys or how it runs (`--set`, `--sweep`, `--device`...).
fn job_command(
    exe: &Path,
    cache: &Path,
    runs_abs: &Path,
    file: &Path,
    global: &GlobalArgs,
    request: &SlurmRun<'_>,
) -> JobCommand {
    let mut before: Vec<String> = vec![
        exe.to_string_lossy().into_owned(),
        "--color".into(),
        "never".into(),
        "--cache-dir".into(),
        cache.to_string_lossy().into_owned(),
        "--runs-dir".into(),
        runs_abs.to_string_lossy().into_owned(),
    ];
    if let Some(remote) = &global.remote {
        before.extend(["--remote".into(), remote.clone()]);
    }
    if global.verbose > 0 {
        before.push(format!("-{}", "v".repeat(global.verbose.into())));
    }
    before.extend(["run-stage".into(), file.to_string_lossy().into_owned()]);
    let mut after = Vec::new();
    for s in request.set {
        after.extend(["--set".into(), s.clone()]);
    }
    for s in &request.sweep_args.sweep {
        after.extend(["--sweep".into(), s.clone()]);
    }
    if let Some(m) = request.sweep_args.sweep_mode {
        after.extend(["--sweep-mode".into(), m.as_str().to_owned()]);
    }
    if let Some(n) = request.sweep_args.max_variants {
        after.extend(["--max-variants".into(), n.to_string()]);
    }
    if let Some(d) = request.device {
        after.extend(["--device".into(), d.to_owned()]);
    }
    if let Some(t) = request.threads {
        after.extend(["--threads".into(), t.to_string()]);
    }
    JobCommand { before, after }
}

/// What `status` and `cancel` both start from: the experiment, the cache, its planned stages,
/// and the job records of earlier `--executor slurm` runs.
fn stages_and_jobs(
    args: &StatusArgs,
    global: &GlobalArgs,
    registry: &Registry,
) -> Result<(Sweep, CacheStore, Plan, jobs::JobsFile), CliError> {
    let sweep = super::load_sweep(&args.file, registry, &args.set, &args.sweep, global)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&sweep.base)))?;
    let runs_dir = super::runs_dir(global);
    let plan = scheduler::plan_sweep(&sweep, &store, &runs_dir, &PlanOptions::default())?.plan;
    let records = jobs::read(store.root(), &sweep.base.name)
        .map_err(|e| CliError::Failed(format!("cannot read the job records: {e}")))?;
    Ok((sweep, store, plan, records))
}

/// `vaepipe status FILE`: each stage's state and job; a failed job's log tail.
pub(super) fn status(
    args: StatusArgs,
    global: &GlobalArgs,
    registry: &Registry,
) -> Result<(), CliError> {
    let (_, store, plan, records) = stages_and_jobs(&args, global, registry)?;
    let slurm = SlurmExecutor::new(Box::new(SlurmCommands));
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for ps in &plan.stages {
        let record = records.jobs.get(ps.key.as_str());
        let state = slurm.node_state(&store, ps, record);
        let (word, detail) = state.describe();
        let job = record
            .map(|r| format!("job {}", r.job_id))
            .unwrap_or_default();
        let line = format!("{:width$}  {word:<9}  {job:<10}  {detail}", ps.name);
        println!("{}", line.trim_end());
        if let (NodeState::Job(JobState::Failed(_) | JobState::Unknown), Some(r)) = (&state, record)
        {
            println!("    log: {}", r.log.display());
            for l in jobs::log_tail(&r.log, LOG_TAIL_LINES).unwrap_or_default() {
                println!("    | {l}");
            }
        }
    }
    Ok(())
}

/// `vaepipe cancel FILE`: `scancel`s every queued or running job of the experiment's stages.
pub(super) fn cancel(
    args: StatusArgs,
    global: &GlobalArgs,
    registry: &Registry,
) -> Result<(), CliError> {
    let (sweep, _, plan, records) = stages_and_jobs(&args, global, registry)?;
    let slurm = SlurmExecutor::new(Box::new(SlurmCommands));
    let cancelled = slurm
        .cancel(&plan, &records)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    for (stage, job, word) in &cancelled {
        println!("{stage}: cancelling job {job} ({word})");
    }
    if cancelled.is_empty() {
        println!("{}: nothing queued or running", sweep.base.name);
        return Ok(());
    }
    println!(
        "{}: cancelled {} job{}",
        sweep.base.name,
        cancelled.len(),
        if cancelled.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The hidden `run-stage`: what a Slurm job runs.
pub(super) fn run_stage(
    args: RunStageArgs,
    global: &GlobalArgs,
    registry: &Registry,
) -> Result<(), CliError> {
    let sweep = super::load_sweep(&args.file, registry, &args.set, &args.sweep, global)?;
    // `VAEPIPE_JOB_CACHE_DIR` (`%j`: the job id): a cache of the job's own on a node that
    // does not share the submitter's filesystem; with a remote it pulls its upstream entries
    // and pushes its own, and links under that cache's `runs/`.
    let job_cache = std::env::var("VAEPIPE_JOB_CACHE_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map(|d| {
            PathBuf::from(d.replace("%j", &std::env::var("SLURM_JOB_ID").unwrap_or_default()))
        });
    let store = match &job_cache {
        Some(dir) => CacheStore::open(dir)?,
        None => CacheStore::open(&super::cache_dir(global, Some(&sweep.base)))?,
    };
    let runs_dir = match &job_cache {
        Some(dir) => dir.join("runs"),
        None => super::runs_dir(global),
    };
    let full = scheduler::plan_sweep(&sweep, &store, &runs_dir, &PlanOptions::default())?.plan;
    let Some(node) = full.stages.iter().find(|s| s.key.as_str() == args.key) else {
        let now = full
            .stages
            .iter()
            .find(|s| s.name == args.stage)
            .map(|s| format!("its key is now {}", s.key))
            .unwrap_or_else(|| "it is no longer in the plan".to_owned());
        return Err(CliError::Usage(format!(
            "`{}` changed since stage `{}` was submitted with key {}: {now}; refusing to run\n  help: run `vaepipe run --executor slurm {}` again to submit what is dirty now",
            args.file.display(),
            args.stage,
            args.key,
            args.file.display()
        )));
    };
    // Without a shared filesystem a job's cache is its own: it reads its upstream entries
    // through the remote and pushes its own entry there (`[cache] remote`, `--remote`).
    let remote = super::remote_for(global, Some(&sweep.base))?.map(|r| r.with_push(true));
    if let Some(remote) = &remote {
        for up in node.upstream.values() {
            match remote.pull(&store, &up.key, &up.stage) {
                Ok(crate::cache::remote::PullOutcome::Absent) => {
                    return Err(CliError::Failed(format!(
                        "upstream stage `{}` (key {}…) is neither in this job's cache nor on the remote {}",
                        up.stage,
                        up.key.short(),
                        remote.url()
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(CliError::Failed(format!("upstream stage `{}`: {e}", up.stage))),
            }
        }
    }
    for &d in &node.deps {
        let up = &full.stages[d];
        if store.get(&up.key).is_none() {
            return Err(CliError::Failed(format!(
                "upstream stage `{}` (key {}…) has no cache entry; its job did not complete",
                up.name,
                up.key.short()
            )));
        }
    }
    let mut one = node.clone();
    one.deps.clear();
    one.forced = args.force;
    let plan = Plan {
        experiment: full.experiment.clone(),
        stages: vec![one],
    };
    tracing::info!(
        "job for stage `{}` of `{}` (key {}…) on {}",
        node.name,
        sweep.base.name,
        node.key.short(),
        std::env::var("SLURMD_NODENAME").unwrap_or_else(|_| "this machine".into())
    );
    let cancel = Arc::new(AtomicBool::new(false));
    install_signal_handlers(&cancel);
    let exp = &sweep.base;
    let run_options = RunOptions {
        device: args
            .device
            .or_else(|| exp.device.clone())
            .unwrap_or_else(|| "auto".to_owned()),
        threads: args.threads,
        quiet: global.quiet,
    };
    let exec = ExecuteOptions {
        run: &run_options,
        jobs: 1,
        cancel,
        runs_dir,
        tool_version: super::tool_version(),
        remote: remote.as_ref(),
    };
    let experiments: Vec<&crate::config::Experiment> = sweep.variants.iter().collect();
    let report = scheduler::execute_variants(&experiments, &plan, &store, &exec, &render_event);
    match report.results.first().map(|(_, o)| o) {
        Some(Outcome::Hit { .. } | Outcome::Ran { .. }) => Ok(()),
        Some(Outcome::Cancelled) => Err(CliError::Interrupted),
        Some(Outcome::Failed { error }) => Err(CliError::Failed(format!(
            "stage `{}` failed: {error}",
            node.name
        ))),
        Some(Outcome::Skipped { because }) => Err(CliError::Failed(because.clone())),
        None => Err(CliError::Failed("internal error: nothing ran".into())),
    }
}
