//! The engine's CLI verbs (`run`, `plan`, `dag`, `gc`, `cache verify/push/pull`, `kinds`, `lock`,
//! `verify`, `diff`, and for Slurm `status`, `cancel` and the hidden `run-stage`), for the root binary
//! to compose: it flattens [`EngineCommand`] into its own subcommand enum, flattens
//! [`GlobalArgs`] into its parser, calls [`init_logging`] once and hands each engine verb to
//! [`execute`] with its [`Registry`] of stage kinds and its [`Hooks`] (output comparison for
//! `verify`, sweep images for `run`).
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (every selected stage fresh or run; `gc`/`verify` found nothing wrong) |
//! | 1 | a stage failed, the run could not complete (I/O error in the cache, unreadable input), or `cache verify` found damaged entries |
//! | 1 | (also) `verify` found outputs that differ from the lock, or `lock` found stages without a cache entry |
//! | 2 | bad usage or config: experiment file errors, a bad `--set`/`--sweep`, an unknown stage in `--only`/`--force`/`--stage`, `gc` on a directory that is not a cache, `run --locked`/`verify` finding the config or an input different from the lock (or no lock) |
//! | 130 / 143 | interrupted by Ctrl-C (SIGINT) / SIGTERM; finished entries stay committed, partial work stays for a resume |
//!
//! `status` exits 0 whatever the stages' states (it reports, it does not judge); `cancel` exits 1
//! when `scancel` fails; `run --executor slurm` exits 0 once every dirty stage is submitted, or,
//! with `--wait`, like a local run (1 when a job failed or was cancelled). The hidden `run-stage`
//! exits 2 when the stage's key is not the one it was submitted with.
//!
//! # Running on Slurm
//!
//! `run --executor slurm` (or `[executor] kind = "slurm"` in the file; the local executor stays
//! the default) submits each *dirty* stage as one `sbatch` job; a fresh stage is linked and not
//! submitted. A job's `#SBATCH --dependency=afterok:` lists the jobs of its upstream stages
//! submitted in the same run (a fresh upstream adds none), with `--kill-on-invalid-dep=yes`, so a
//! failed upstream cancels what waits for it. A key that already has a queued or running job
//! (an earlier `run`, another user's sweep on the same cache) is waited on, not submitted again.
//! The job runs this same binary: `run-stage FILE --stage S --key K [--set ...] [--sweep ...]`,
//! which re-resolves the file, refuses if `S`'s key is no longer `K`, and runs the stage through
//! the same per-key `flock` and atomic commit as a local run, so the cache must be on a path
//! every node sees (locks need a filesystem whose `flock` works across nodes: NFSv4, Lustre,
//! GPFS, BeeGFS). Without `--wait`, `run` returns after printing the job ids; with it, it polls
//! (`VAEPIPE_SLURM_POLL_MS`, default 2000) and reports like a local run.
//!
//! ```toml
//! [executor]
//! kind = "slurm"            # or "local" (the default)
//! partition = "gpu"         # sbatch --partition
//! account = "lab"           # sbatch --account
//! time = "4:00:00"          # sbatch --time (M, H:M:S, D-H:M...)
//! extra = ["--qos=normal"]  # more sbatch options for every job
//!
//! [executor.resources.train-vae]   # per stage kind: `name = value` → `--name=value`
//! gres = "gpu:1"
//! cpus-per-task = 8
//! exclusive = true                 # `true` → `--exclusive`
//! ```
//!
//! Without a shared filesystem, set a remote cache (`[cache] remote`, `--remote`) and give
//! each job a cache of its own with `VAEPIPE_JOB_CACHE_DIR` in the job's environment (`%j` is
//! the job id; sbatch passes the submitter's environment on by default): a job pulls its
//! upstream entries from the remote and pushes its own, and `run --wait` pulls what the jobs
//! pushed into the submitter's cache and links it. The job logs still go to the submitter's
//! `<cache>/jobs/logs/`, so that directory must exist where the job runs.
//!
//! What a submission leaves under the cache: `jobs/<experiment>.json` (key → job id, stage, log,
//! script, dependencies), `jobs/scripts/<key>.sh`, `jobs/logs/<key>-<jobid>.log` and `.rc` (the
//! job's exit status, for when Slurm has forgotten the job). `vaepipe status FILE` shows, per
//! stage: `fresh`, `dirty` (not submitted), or its job's `pending (reason)`, `running`, `done`,
//! `failed` (with the tail of its log), `cancelled`; it asks `scontrol show job` (no accounting
//! daemon needed) and falls back to `sacct`, then to the `.rc` file. `vaepipe cancel FILE`
//! `scancel`s the queued and running jobs of the experiment's stages. Both take the run's
//! `--set`/`--sweep`, since those change keys. Re-running after a failure resubmits only what is
//! dirty: the failed stage and what is downstream of it.
//!
//! Each verb lives in its own file and only converts flags into engine calls and renders the
//! result; no verb owns logic the engine needs.

mod dag;
mod diff;
mod gc;
mod hooks;
mod lock;
mod output;
mod plan;
mod remote;
mod run;
mod search;
mod slurm;
mod verify;

pub use hooks::{Hooks, SweepHook};

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::{ConfigErrors, Experiment};
use crate::registry::Registry;
use crate::scheduler::EngineError;

/// The documented exit codes (see the module docs).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INTERRUPTED: u8 = 130;
}

/// Flags every verb accepts.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// More output: `-v` debug logs (and `plan` prints each key's preimage), `-vv` trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Cache directory [default: the experiment's `cache`, else ./cache].
    #[arg(long, global = true, env = "VAEPIPE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The shared remote cache, `s3://BUCKET/PREFIX` [default: `VAEPIPE_REMOTE`, else the
    /// experiment's `[cache] remote`]: runs read through it, `cache push`/`pull` move entries,
    /// `cache verify --remote` audits it. Endpoint and credentials come from the AWS
    /// environment and ~/.aws. Never part of a key.
    #[arg(long, global = true, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,
    /// Where `runs/<experiment>/<stage>` links go [default: ./runs].
    #[arg(long, global = true, env = "VAEPIPE_RUNS_DIR", value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Colour in logs.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Color {
    #[default]
    Auto,
    Always,
    Never,
}

/// The engine's verbs.
#[derive(Debug, Clone, Subcommand)]
pub enum EngineCommand {
    /// Run an experiment: every stage whose cache entry is missing, upstream first.
    Run(run::RunArgs),
    /// Say, per stage, whether it is fresh or dirty and why, without running anything.
    Plan(plan::PlanArgs),
    /// Print the stage graph as Graphviz dot.
    Dag(dag::DagArgs),
    /// Delete cache entries that no `runs/` link points at.
    Gc(gc::GcArgs),
    /// Inspect the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// List the stage kinds this binary knows.
    Kinds,
    /// Write `FILE.lock`: input content fingerprints, each stage's config and key, each output's
    /// blake3. Run the experiment first.
    Lock(lock::LockArgs),
    /// Recompute stages into a scratch cache and compare their outputs with `FILE.lock`.
    Verify(verify::VerifyArgs),
    /// Show each stage's state and Slurm job (fresh, pending, running, done, failed with the
    /// tail of its log, cancelled) after `run --executor slurm`.
    Status(slurm::StatusArgs),
    /// Cancel the queued and running Slurm jobs of an experiment's stages.
    Cancel(slurm::StatusArgs),
    /// Compare two runs (experiment files, `FILE@VARIANT` sweep variants or runs/ directories):
    /// params that differ, which keys differ and why, metrics with their difference, and a
    /// side-by-side HTML page of their images.
    Diff(diff::DiffArgs),
    /// Run one stage by key (what a Slurm job runs); refuses when the stage's key changed.
    #[command(hide = true)]
    RunStage(slurm::RunStageArgs),
}

/// `--sweep` and `--sweep-mode`, shared by `run`, `plan`, `lock` and `verify`.
#[derive(Debug, Clone, Args, Default)]
pub struct SweepArgs {
    /// Sweep a param over values: `stage.<stage>.<param>=V1,V2,...` (adds to, or replaces an
    /// axis of, the file's `[sweep]`).
    #[arg(long = "sweep", value_name = "KEY=V1,V2")]
    pub sweep: Vec<String>,
    /// How sweep axes combine [default: the file's `[sweep] mode`, else grid].
    #[arg(long, value_enum, value_name = "MODE")]
    pub sweep_mode: Option<crate::config::SweepMode>,
    /// Allow a sweep of up to N variants [default: 1000]; a larger one is refused before
    /// anything is planned.
    #[arg(long, value_name = "N")]
    pub max_variants: Option<usize>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CacheCommand {
    /// Re-hash every entry and name those that were tampered with or truncated; with
    /// `--remote`, the remote cache's manifests and blobs (`--sample N`, `--recompute N`).
    Verify(remote::VerifyArgs),
    /// Upload entries to the remote cache: FILE's stages, or every local entry.
    Push(remote::PushArgs),
    /// Download FILE's entries from the remote cache into the local one.
    Pull(remote::PullArgs),
}

/// A verb's failure, mapped to an exit code by [`exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownStage { .. } => CliError::Usage(e.to_string()),
            EngineError::Store(
                crate::cache::StoreError::NotACache(_) | crate::cache::StoreError::NotEmpty(_),
            ) => CliError::Usage(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<crate::cache::remote::RemoteError> for CliError {
    fn from(e: crate::cache::remote::RemoteError) -> Self {
        match e {
            crate::cache::remote::RemoteError::Interrupted => CliError::Interrupted,
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<crate::cache::StoreError> for CliError {
    fn from(e: crate::cache::StoreError) -> Self {
        EngineError::from(e).into()
    }
}

/// The exit code of a verb's result (see the module docs for the table).
pub fn exit_code(result: &Result<(), CliError>) -> u8 {
    match result {
        Ok(()) => exit::OK,
        Err(CliError::Config(_) | CliError::Usage(_)) => exit::USAGE,
        Err(CliError::Failed(_)) => exit::FAILED,
        Err(CliError::Interrupted) => crate::signal::exit_code(),
    }
}

/// Runs one engine verb, prints its error (if any) once to stderr, and returns the exit code.
pub fn execute(
    cmd: EngineCommand,
    global: &GlobalArgs,
    registry: &Registry,
    hooks: &Hooks,
) -> ExitCode {
    let result = execute_result(cmd, global, registry, hooks);
    match &result {
        Err(CliError::Config(e)) => eprint!("{e}"),
        Err(CliError::Interrupted) => {
            eprintln!("error: interrupted; finished stages stay cached, rerun to resume")
        }
        Err(e) => eprintln!("error: {e}"),
        Ok(()) => {}
    }
    ExitCode::from(exit_code(&result))
}

/// Like [`execute`], returning the error instead of printing it.
pub fn execute_result(
    cmd: EngineCommand,
    global: &GlobalArgs,
    registry: &Registry,
    hooks: &Hooks,
) -> Result<(), CliError> {
    match cmd {
        EngineCommand::Run(args) => run::run(args, global, registry, hooks),
        EngineCommand::Plan(args) => plan::plan(args, global, registry),
        EngineCommand::Dag(args) => dag::dag(args, registry),
        EngineCommand::Gc(args) => gc::gc(args, global),
        EngineCommand::Cache(CacheCommand::Verify(args)) if global.remote.is_none() => {
            if args.sample.is_some() || args.recompute.is_some() {
                return Err(CliError::Usage(
                    "`--sample` and `--recompute` check the remote cache: add `--remote`".into(),
                ));
            }
            gc::verify(global)
        }
        EngineCommand::Cache(CacheCommand::Verify(args)) => remote::verify(args, global, registry),
        EngineCommand::Cache(CacheCommand::Push(args)) => remote::push(args, global, registry),
        EngineCommand::Cache(CacheCommand::Pull(args)) => remote::pull(args, global, registry),
        EngineCommand::Lock(args) => lock::lock(args, global, registry),
        EngineCommand::Verify(args) => verify::verify(args, global, registry, hooks),
        EngineCommand::Status(args) => slurm::status(args, global, registry),
        EngineCommand::Cancel(args) => slurm::cancel(args, global, registry),
        EngineCommand::RunStage(args) => slurm::run_stage(args, global, registry),
        EngineCommand::Diff(args) => diff::diff(args, global, registry),
        EngineCommand::Kinds => {
            print!("{}", registry.describe());
            Ok(())
        }
    }
}

/// Installs the tracing subscriber: `-q` warn, default info, `-v` debug, `-vv` trace; `RUST_LOG`
/// overrides all of them. Logs go to stderr; stdout carries only the verbs' output.
pub fn init_logging(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let level = if global.quiet {
        "warn"
    } else {
        match global.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = match global.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// The cache for an experiment: `--cache-dir`/`VAEPIPE_CACHE_DIR`, else `[experiment] cache`,
/// else `./cache`.
pub(crate) fn cache_dir(global: &GlobalArgs, exp: Option<&Experiment>) -> PathBuf {
    global
        .cache_dir
        .clone()
        .or_else(|| exp.and_then(|e| e.cache_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("cache"))
}

/// The remote cache: `--remote`/`VAEPIPE_REMOTE`, else `[cache] remote`; `None` without one.
/// Read-only until the caller says `with_push`.
pub(crate) fn remote_for(
    global: &GlobalArgs,
    exp: Option<&Experiment>,
) -> Result<Option<crate::cache::remote::Remote>, CliError> {
    let url = global
        .remote
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::env::var("VAEPIPE_REMOTE")
                .ok()
                .filter(|u| !u.is_empty())
        })
        .or_else(|| exp.and_then(|e| e.remote.clone()));
    let Some(url) = url else { return Ok(None) };
    let progress = crate::progress::ProgressMode::detect(global.quiet);
    crate::cache::remote::Remote::open(&url, progress)
        .map(Some)
        .map_err(|e| CliError::Usage(e.to_string()))
}

pub(crate) fn runs_dir(global: &GlobalArgs) -> PathBuf {
    global
        .runs_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// Loads an experiment file with its `--set`s and `--sweep`s; an adaptive sweep comes with every
/// trial the cache has results for, then its next generation (`cli::search`).
pub(crate) fn load_sweep(
    file: &Path,
    registry: &Registry,
    set: &[String],
    sweep: &SweepArgs,
    global: &GlobalArgs,
) -> Result<crate::config::Sweep, CliError> {
    let first = search::load(
        file,
        registry,
        set,
        sweep,
        crate::config::SearchResults::Nothing,
    )?;
    search::with_results(file, registry, set, sweep, global, first)
}

/// Loads an experiment file (with `--set`/`--sweep`), opens its cache and plans every stage.
pub(crate) fn plan_file(
    file: &Path,
    registry: &Registry,
    set: &[String],
    sweep: &SweepArgs,
    global: &GlobalArgs,
) -> Result<
    (
        crate::config::Sweep,
        crate::cache::CacheStore,
        crate::scheduler::SweepPlan,
    ),
    CliError,
> {
    let sweep = load_sweep(file, registry, set, sweep, global)?;
    let store = crate::cache::CacheStore::open(&cache_dir(global, Some(&sweep.base)))?;
    let plan = crate::scheduler::plan_sweep(
        &sweep,
        &store,
        &runs_dir(global),
        &crate::scheduler::PlanOptions::default(),
    )?;
    Ok((sweep, store, plan))
}

/// The tool version recorded in manifests and locks.
pub(crate) fn tool_version() -> String {
    format!("vaepipe {}", env!("CARGO_PKG_VERSION"))
}

/// `run --locked` and `verify`: refuses (exit 2) when the experiment differs from `FILE.lock`,
/// naming every difference.
pub(crate) fn check_lock(
    file: &Path,
    sweep: &crate::config::Sweep,
    plan: &crate::scheduler::SweepPlan,
    store: &crate::cache::CacheStore,
) -> Result<crate::lock::LockFile, CliError> {
    let path = crate::lock::lock_path(file);
    if !path.exists() {
        return Err(CliError::Usage(format!(
            "no lock file `{}`
  help: run `vaepipe lock {}` after a successful run",
            path.display(),
            file.display()
        )));
    }
    let lock = crate::lock::LockFile::read(&path).map_err(|e| CliError::Usage(e.to_string()))?;
    let mismatches = crate::lock::check(&lock, sweep, plan, store)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if mismatches.is_empty() {
        return Ok(lock);
    }
    let lines: Vec<String> = mismatches
        .iter()
        .map(|m| format!("  {}", m.present()))
        .collect();
    Err(CliError::Usage(format!(
        "`{}` differs from `{}`; refusing to run:
{}
  help: revert the change, or run `vaepipe lock {}` to accept it",
        file.display(),
        path.display(),
        lines.join(
            "
"
        ),
        file.display()
    )))
}

pub(crate) fn load(
    file: &Path,
    registry: &Registry,
    set: &[String],
) -> Result<Experiment, CliError> {
    Ok(crate::config::load(file, registry, set)?)
}
