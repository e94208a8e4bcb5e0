//! The Slurm executor's verbs: `run --executor slurm` ([`submit`]), `status`, `cancel`, and the
//! hidden `run-stage` each job runs.
//!
//! `submit` plans like a local run; a fresh stage is linked and not submitted, a dirty one gets a
//! job script in `<cache>/jobs/scripts/<key>.sh` (`#SBATCH` lines from `[executor]`,
//! `--dependency=afterok:` on the jobs of its upstream stages submitted in the same run) and is
//! submitted with `sbatch --parsable`; a key that already has a queued or running job (an earlier
//! submission, another user's sweep on the same cache) is not submitted again but waited on.
//! Every submission is recorded in `<cache>/jobs/<experiment>.json` (see
//! [`crate::executor::jobs`]). A job runs `<this binary> run-stage FILE --stage S --key K` with
//! the same `--set`/`--sweep`: it re-resolves the experiment, refuses (exit 2) when the stage's
//! key is no longer `K` (the file changed since submission), checks that its upstream entries
//! exist, and runs the stage through the scheduler's lock → run → atomic commit → link path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::run::RunArgs;
use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::CacheStore;
use crate::config::Sweep;
use crate::executor::jobs::{self, JobRecord};
use crate::executor::slurm::{JobScript, JobState, Slurm};
use crate::registry::Registry;
use crate::scheduler::{self, ExecuteOptions, Outcome, Plan, PlanOptions, PlannedStage, RunReport};
use crate::stage::RunOptions;

/// Lines of a failed job's log that `status` and `run --wait` show.
const LOG_TAIL_LINES: usize = 12;

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

/// What a plan node is, as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
enum NodeState {
    /// In the cache, not computed by a recorded job.
    Fresh,
    /// Dirty and no job recorded.
    NotSubmitted,
    Job(JobState),
}

fn node_state(store: &CacheStore, ps: &PlannedStage, record: Option<&JobRecord>) -> NodeState {
    let cached = store.get(&ps.key).is_some();
    let Some(record) = record else {
        return if cached {
            NodeState::Fresh
        } else {
            NodeState::NotSubmitted
        };
    };
    if cached {
        return NodeState::Job(JobState::Completed);
    }
    let state = Slurm.state(&record.job_id).unwrap_or(JobState::Unknown);
    let state = match state {
        // Slurm forgot the job: its exit status file says how it ended.
        JobState::Unknown => match record.exit_status() {
            Some(0) => JobState::Failed("exited 0 but left no cache entry".into()),
            Some(rc) => JobState::Failed(format!("exit code {rc}")),
            None => JobState::Unknown,
        },
        JobState::Completed => {
            JobState::Failed("completed but left no cache entry (was it collected by `gc`?)".into())
        }
        other => other,
    };
    NodeState::Job(state)
}

fn describe(state: &NodeState) -> (&'static str, String) {
    match state {
        NodeState::Fresh => ("fresh", String::new()),
        NodeState::NotSubmitted => ("dirty", "not submitted".into()),
        NodeState::Job(s) => (
            s.word(),
            match s {
                JobState::Pending(reason) if !reason.is_empty() && reason != "None" => {
                    format!("({reason})")
                }
                JobState::Failed(detail) => detail.clone(),
                JobState::Unknown => "Slurm no longer knows the job".into(),
                _ => String::new(),
            },
        ),
    }
}

/// `run --executor slurm`: submits every dirty stage; with `--wait` waits and reports.
#[allow(clippy::too_many_arguments)]
pub(super) fn submit(
    args: &RunArgs,
    sweep: &Sweep,
    sweep_plan: &scheduler::SweepPlan,
    store: &CacheStore,
    runs_dir: &Path,
    global: &GlobalArgs,
    registry: &Registry,
    started: Instant,
) -> Result<(), CliError> {
    let exp = &sweep.base;
    let plan = &sweep_plan.plan;
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::Failed(format!("{what}: {e}"));
    let exe = std::env::current_exe().map_err(|e| failed("cannot find this program's path", &e))?;
    let cwd =
        std::env::current_dir().map_err(|e| failed("cannot read the working directory", &e))?;
    let runs_abs = std::path::absolute(runs_dir).unwrap_or_else(|_| runs_dir.to_path_buf());
    let root = store.root().to_path_buf();
    let jobs_dir = jobs::jobs_dir(&root);
    let known =
        jobs::read(&root, &exp.name).map_err(|e| failed("cannot read the job records", &e))?;

    let mut job_of: Vec<Option<String>> = vec![None; plan.stages.len()];
    let mut submitted = vec![false; plan.stages.len()];
    let (mut n_submitted, mut n_fresh, mut n_queued) = (0, 0, 0);
    for (i, ps) in plan.stages.iter().enumerate() {
        if matches!(ps.freshness, scheduler::Freshness::Fresh) {
            for link in &ps.links {
                store.link_at(&runs_abs, link, &ps.key)?;
            }
            n_fresh += 1;
            continue;
        }
        if !ps.forced {
            if let Some(rec) = known.jobs.get(ps.key.as_str()) {
                if Slurm.state(&rec.job_id).is_some_and(|s| s.is_live()) {
                    println!(
                        "{}: already queued as job {} (key {}…)",
                        ps.name,
                        rec.job_id,
                        ps.key.short()
                    );
                    job_of[i] = Some(rec.job_id.clone());
                    n_queued += 1;
                    continue;
                }
            }
        }
        let after: Vec<String> = ps.deps.iter().filter_map(|&d| job_of[d].clone()).collect();
        let mut command: Vec<String> = vec![
            exe.to_string_lossy().into_owned(),
            "--color".into(),
            "never".into(),
            "--cache-dir".into(),
            root.to_string_lossy().into_owned(),
            "--runs-dir".into(),
            runs_abs.to_string_lossy().into_owned(),
        ];
        if global.verbose > 0 {
            command.push(format!("-{}", "v".repeat(global.verbose.into())));
        }
        command.extend([
            "run-stage".into(),
            exp.file.to_string_lossy().into_owned(),
            "--stage".into(),
            ps.name.clone(),
            "--key".into(),
            ps.key.as_str().to_owned(),
        ]);
        for s in &args.set {
            command.extend(["--set".into(), s.clone()]);
        }
        for s in &args.sweep.sweep {
            command.extend(["--sweep".into(), s.clone()]);
        }
        if let Some(m) = args.sweep.sweep_mode {
            command.extend(["--sweep-mode".into(), m.as_str().to_owned()]);
        }
        if ps.forced {
            command.push("--force".into());
        }
        if let Some(d) = &args.device {
            command.extend(["--device".into(), d.clone()]);
        }
        if let Some(t) = args.threads {
            command.extend(["--threads".into(), t.to_string()]);
        }
        let log_pattern = jobs_dir.join("logs").join(format!("{}-%j.log", ps.key));
        let script = JobScript {
            experiment: &exp.name,
            stage: &ps.name,
            kind: &ps.kind,
            key: ps.key.as_str(),
            log_pattern: log_pattern.clone(),
            chdir: cwd.clone(),
            after: after.clone(),
            command,
            config: &exp.executor,
        };
        let script_path = jobs_dir.join("scripts").join(format!("{}.sh", ps.key));
        std::fs::create_dir_all(jobs_dir.join("logs"))
            .map_err(|e| failed("cannot create the job log directory", &e))?;
        jobs::write_atomic(&script_path, &script.render())
            .map_err(|e| failed(&format!("cannot write `{}`", script_path.display()), &e))?;
        let id = Slurm
            .submit(&script_path)
            .map_err(|e| failed(&format!("cannot submit stage `{}`", ps.name), &e))?;
        let record = JobRecord {
            stage: ps.name.clone(),
            job_id: id.clone(),
            log: jobs_dir.join("logs").join(format!("{}-{id}.log", ps.key)),
            script: script_path,
            after: after.clone(),
            submitted_at: crate::cache::manifest::rfc3339(std::time::SystemTime::now()),
            file: exp.file.clone(),
        };
        jobs::update(&root, &exp.name, |f| {
            f.jobs.insert(ps.key.as_str().to_owned(), record)
        })
        .map_err(|e| failed("cannot record the job", &e))?;
        let deps = if after.is_empty() {
            String::new()
        } else {
            format!(" after {}", after.join(", "))
        };
        println!(
            "{}: submitted job {id}{deps} (key {}…)",
            ps.name,
            ps.key.short()
        );
        job_of[i] = Some(id);
        submitted[i] = true;
        n_submitted += 1;
    }
    let queued = if n_queued > 0 {
        format!(", {n_queued} already queued")
    } else {
        String::new()
    };
    println!(
        "{}: {n_submitted} submitted to Slurm, {n_fresh} fresh{queued}",
        exp.name
    );
    if !args.wait {
        if n_submitted + n_queued > 0 {
            println!(
                "follow with `vaepipe status {}`; cancel with `vaepipe cancel {}`",
                args.file.display(),
                args.file.display()
            );
        }
        return Ok(());
    }

    // --wait: poll until no job of ours is queued or running, then report like a local run.
    let cancel = Arc::new(AtomicBool::new(false));
    super::run::install_signal_handlers(&cancel);
    let poll = std::env::var("VAEPIPE_SLURM_POLL_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000u64);
    let records =
        jobs::read(&root, &exp.name).map_err(|e| failed("cannot read the job records", &e))?;
    let mut last: BTreeMap<usize, NodeState> = BTreeMap::new();
    let states = loop {
        let mut live = false;
        let mut now = BTreeMap::new();
        for (i, ps) in plan.stages.iter().enumerate() {
            if job_of[i].is_none() {
                continue;
            }
            let state = node_state(store, ps, records.jobs.get(ps.key.as_str()));
            live |= matches!(&state, NodeState::Job(s) if s.is_live());
            if last.get(&i) != Some(&state) {
                let (word, detail) = describe(&state);
                tracing::info!(
                    "stage `{}` {word} (job {}){}",
                    ps.name,
                    job_of[i].as_deref().unwrap_or("?"),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" {detail}")
                    }
                );
            }
            now.insert(i, state);
        }
        last = now;
        if !live {
            break last;
        }
        if cancel.load(Ordering::Relaxed) {
            eprintln!(
                "stopped waiting; the jobs keep running (`vaepipe status {}`, `vaepipe cancel {}`)",
                args.file.display(),
                args.file.display()
            );
            return Err(CliError::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(poll));
    };
    let mut results = Vec::new();
    for (i, ps) in plan.stages.iter().enumerate() {
        let outcome = match store.get(&ps.key) {
            Some(a) if submitted[i] => Outcome::Ran {
                key: ps.key.clone(),
                duration: Duration::from_secs_f64(a.manifest.duration_s.max(0.0)),
                dir: a.dir,
            },
            Some(a) => Outcome::Hit {
                key: ps.key.clone(),
                dir: a.dir,
            },
            None => {
                let record = records.jobs.get(ps.key.as_str());
                match states.get(&i) {
                    Some(NodeState::Job(JobState::Cancelled)) => {
                        let upstream_failed = ps
                            .deps
                            .iter()
                            .any(|&d| store.get(&plan.stages[d].key).is_none());
                        if upstream_failed {
                            Outcome::Skipped {
                                because: "an upstream job did not complete".into(),
                            }
                        } else {
                            Outcome::Failed {
                                error: format!(
                                    "job {} was cancelled",
                                    record.map_or("?", |r| r.job_id.as_str())
                                ),
                            }
                        }
                    }
                    Some(state) => {
                        let (word, detail) = describe(state);
                        let mut error = format!(
                            "job {} {word}{}",
                            record.map_or("?", |r| r.job_id.as_str()),
                            if detail.is_empty() {
                                String::new()
                            } else {
                                format!(": {detail}")
                            }
                        );
                        if let Some(r) = record {
                            error.push_str(&format!("; log `{}`", r.log.display()));
                            for line in jobs::log_tail(&r.log, LOG_TAIL_LINES).unwrap_or_default() {
                                error.push_str(&format!("\n    | {line}"));
                            }
                        }
                        Outcome::Failed { error }
                    }
                    None => Outcome::Failed {
                        error: "no job was submitted for it".into(),
                    },
                }
            }
        };
        if let Outcome::Failed { error } = &outcome {
            tracing::error!("stage `{}` failed: {error}", ps.name);
        }
        results.push((ps.name.clone(), outcome));
    }
    let report = RunReport { results };
    super::run::finish(
        started, sweep, sweep_plan, &report, store, runs_dir, registry,
    )
}

/// What `status` and `cancel` both start from: the experiment, the cache, its planned stages,
/// and the job records of earlier `--executor slurm` runs.
fn stages_and_jobs(
    args: &StatusArgs,
    global: &GlobalArgs,
    registry: &Registry,
) -> Result<(Sweep, CacheStore, Plan, jobs::JobsFile), CliError> {
    let sweep = super::load_sweep(&args.file, registry, &args.set, &args.sweep)?;
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
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for ps in &plan.stages {
        let record = records.jobs.get(ps.key.as_str());
        let state = node_state(&store, ps, record);
        let (word, detail) = describe(&state);
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
    let mut ids = Vec::new();
    for ps in &plan.stages {
        let Some(r) = records.jobs.get(ps.key.as_str()) else {
            continue;
        };
        if let Some(state) = Slurm.state(&r.job_id).filter(JobState::is_live) {
            println!(
                "{}: cancelling job {} ({})",
                ps.name,
                r.job_id,
                state.word()
            );
            ids.push(r.job_id.clone());
        }
    }
    if ids.is_empty() {
        println!("{}: nothing queued or running", sweep.base.name);
        return Ok(());
    }
    Slurm
        .cancel(&ids)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    println!(
        "{}: cancelled {} job{}",
        sweep.base.name,
        ids.len(),
        if ids.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The hidden `run-stage`: what a Slurm job runs.
pub(super) fn run_stage(
    args: RunStageArgs,
    global: &GlobalArgs,
    registry: &Registry,
) -> Result<(), CliError> {
    let sweep = super::load_sweep(&args.file, registry, &args.set, &args.sweep)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&sweep.base)))?;
    let runs_dir = super::runs_dir(global);
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
    super::run::install_signal_handlers(&cancel);
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
    };
    let experiments: Vec<&crate::config::Experiment> = sweep.variants.iter().collect();
    let report = scheduler::execute_variants(
        &experiments,
        &plan,
        &store,
        &exec,
        &super::run::render_event,
    );
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
