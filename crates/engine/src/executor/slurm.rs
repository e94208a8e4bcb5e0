//! The Slurm executor: submits each dirty stage of a plan as one job ([`SlurmExecutor::submit`])
//! and waits for them ([`SlurmExecutor::wait`]), through a small trait over the Slurm commands
//! ([`SlurmApi`]; the real one is [`super::slurm_commands::SlurmCommands`], the tests use a
//! fake).
//!
//! A fresh stage is linked and not submitted. A dirty one gets a job script in
//! `<cache>/jobs/scripts/<key>.sh` ([`super::job_script`]) with `--dependency=afterok:` on the
//! jobs of its upstream stages submitted in the same run; a key that already has a queued or
//! running job (an earlier submission, another user's sweep on the same cache) is not submitted
//! again but waited on. Every submission is recorded in `<cache>/jobs/<experiment>.json`
//! ([`super::jobs`]). A job runs the binary's hidden `run-stage` verb on one stage by key; what
//! this module says to the user goes through [`SlurmEvent`]s the CLI renders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::job_script::JobScript;
use super::jobs::{self, JobRecord};
pub use super::slurm_commands::JobState;
use super::ExecutorConfig;
use crate::cache::CacheStore;
use crate::scheduler::{Freshness, Outcome, Plan, PlannedStage, RunReport};

/// Lines of a failed job's log that `status` and `run --wait` show.
pub const LOG_TAIL_LINES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{program}`: {source}\n  help: is Slurm installed here (is this a login node)? `scripts/slurm/start-local-slurm.sh` brings up a one-node Slurm for testing")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`sbatch --parsable` printed no job id: {0:?}")]
    NoJobId(String),
    #[error("refusing to write a job script: {0}")]
    Unsafe(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::cache::StoreError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SlurmError {
    let what = what.into();
    move |source| SlurmError::Io { what, source }
}

/// What the executor needs from Slurm: submit a script, ask a job's state, cancel jobs.
pub trait SlurmApi: Send + Sync {
    /// `sbatch --parsable SCRIPT` → the job id.
    fn submit(&self, script: &Path) -> Result<String, SlurmError>;
    /// What Slurm says about a job; `None` when it no longer knows it.
    fn state(&self, job_id: &str) -> Option<JobState>;
    /// `scancel ID...`.
    fn cancel(&self, job_ids: &[String]) -> Result<(), SlurmError>;
}

/// The command line of a stage's job: `before` (the program, its global flags, `run-stage
/// FILE`), then `--stage S --key K [--force]`, then `after` (`--set`, `--sweep`, `--device`...).
#[derive(Debug, Clone, Default)]
pub struct JobCommand {
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// One submission: which plan, where its links go, how its jobs are run.
pub struct Submission<'a> {
    pub experiment: &'a str,
    /// The experiment file (recorded with each job).
    pub file: &'a Path,
    pub config: &'a ExecutorConfig,
    pub plan: &'a Plan,
    pub store: &'a CacheStore,
    /// Absolute.
    pub runs_dir: &'a Path,
    /// Where the jobs run (the submitter's working directory).
    pub chdir: PathBuf,
    pub command: JobCommand,
    /// The remote cache, when jobs have caches of their own (no shared filesystem): a finished
    /// job's entry is pulled from it into `store` and linked before the run reports.
    pub remote: Option<&'a crate::cache::remote::Remote>,
}

/// A job that ran with a cache of its own pushed its entry: bring it here and link it.
fn pull_finished(
    remote: &crate::cache::remote::Remote,
    store: &CacheStore,
    runs_dir: &Path,
    ps: &PlannedStage,
) {
    match remote.pull(store, &ps.key, &ps.name) {
        Ok(crate::cache::remote::PullOutcome::Absent) => {}
        Ok(_) => {
            for link in &ps.links {
                if let Err(e) = store.link_at(runs_dir, link, &ps.key) {
                    tracing::warn!("stage `{}`: {e}", ps.name);
                }
            }
        }
        Err(e) => tracing::warn!(
            "stage `{}`: cannot pull its entry from the remote: {e}",
            ps.name
        ),
    }
}

/// What happened, for the CLI to render.
#[derive(Debug, Clone, PartialEq)]
pub enum SlurmEvent {
    AlreadyQueued {
        stage: String,
        job: String,
        key: String,
    },
    Submitted {
        stage: String,
        job: String,
        after: Vec<String>,
        key: String,
    },
    /// While waiting: a job's state changed.
    Changed {
        stage: String,
        job: String,
        state: NodeState,
    },
}

/// What [`SlurmExecutor::submit`] did, per plan node.
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    /// The job each node waits on (submitted now or already queued).
    pub job_of: Vec<Option<String>>,
    /// Nodes submitted by this call.
    pub submitted: Vec<bool>,
    pub n_submitted: usize,
    pub n_fresh: usize,
    pub n_queued: usize,
}

/// What a plan node is, as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    /// In the cache, not computed by a recorded job.
    Fresh,
    /// Dirty and no job recorded.
    NotSubmitted,
    Job(JobState),
}

impl NodeState {
    /// The state word and its detail (`pending`, `(Dependency)`).
    pub fn describe(&self) -> (&'static str, String) {
        match self {
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
}

/// Waiting was interrupted (Ctrl-C); the jobs keep running.
#[derive(Debug)]
pub struct Interrupted;

/// The Slurm executor over some [`SlurmApi`].
pub struct SlurmExecutor {
    api: Box<dyn SlurmApi>,
}

impl SlurmExecutor {
    pub fn new(api: Box<dyn SlurmApi>) -> SlurmExecutor {
        SlurmExecutor { api }
    }

    pub fn api(&self) -> &dyn SlurmApi {
        self.api.as_ref()
    }

    /// A node's state: in the cache, or its recorded job's state (Slurm's word, else its `.rc`
    /// file's).
    pub fn node_state(
        &self,
        store: &CacheStore,
        ps: &PlannedStage,
        record: Option<&JobRecord>,
    ) -> NodeState {
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
        let state = self.api.state(&record.job_id).unwrap_or(JobState::Unknown);
        let state = match state {
            // Slurm forgot the job: its exit status file says how it ended.
            JobState::Unknown => match record.exit_status() {
                Some(0) => JobState::Failed("exited 0 but left no cache entry".into()),
                Some(rc) => JobState::Failed(format!("exit code {rc}")),
                None => JobState::Unknown,
            },
            JobState::Completed => JobState::Failed(
                "completed but left no cache entry (was it collected by `gc`?)".into(),
            ),
            other => other,
        };
        NodeState::Job(state)
    }

    /// Links every fresh stage and submits every dirty one (upstream first, with `afterok` on
    /// the jobs of its upstream stages), recording each job.
    pub fn submit(
        &self,
        sub: &Submission<'_>,
        on_event: &dyn Fn(&SlurmEvent),
    ) -> Result<Submitted, SlurmError> {
        let plan = sub.plan;
        let root = sub.store.root().to_path_buf();
        let jobs_dir = jobs::jobs_dir(&root);
        let known = jobs::read(&root, sub.experiment).map_err(io("cannot read the job records"))?;
        let n = plan.stages.len();
        let mut out = Submitted {
            job_of: vec![None; n],
            submitted: vec![false; n],
            ..Submitted::default()
        };
        for (i, ps) in plan.stages.iter().enumerate() {
            if matches!(ps.freshness, Freshness::Fresh) {
                for link in &ps.links {
                    sub.store.link_at(sub.runs_dir, link, &ps.key)?;
                }
                out.n_fresh += 1;
                continue;
            }
            if !ps.forced {
                if let Some(rec) = known.jobs.get(ps.key.as_str()) {
                    if self.api.state(&rec.job_id).is_some_and(|s| s.is_live()) {
                        on_event(&SlurmEvent::AlreadyQueued {
                            stage: ps.name.clone(),
                            job: rec.job_id.clone(),
                            key: ps.key.short().to_owned(),
                        });
                        out.job_of[i] = Some(rec.job_id.clone());
                        out.n_queued += 1;
                        continue;
                    }
                }
            }
            let after: Vec<String> = ps
                .deps
                .iter()
                .filter_map(|&d| out.job_of[d].clone())
                .collect();
            let mut command = sub.command.before.clone();
            command.extend([
                "--stage".into(),
                ps.name.clone(),
                "--key".into(),
                ps.key.as_str().to_owned(),
            ]);
            if ps.forced {
                command.push("--force".into());
            }
            command.extend(sub.command.after.iter().cloned());
            let log_pattern = jobs_dir.join("logs").join(format!("{}-%j.log", ps.key));
            let script = JobScript {
                experiment: sub.experiment,
                stage: &ps.name,
                kind: &ps.kind,
                key: ps.key.as_str(),
                log_pattern,
                chdir: sub.chdir.clone(),
                after: after.clone(),
                command,
                config: sub.config,
            };
            let script_path = jobs_dir.join("scripts").join(format!("{}.sh", ps.key));
            std::fs::create_dir_all(jobs_dir.join("logs"))
                .map_err(io("cannot create the job log directory"))?;
            crate::atomic_file::write_atomic(&script_path, script.render()?.as_bytes())
                .map_err(io(format!("cannot write `{}`", script_path.display())))?;
            let id = self.api.submit(&script_path).map_err(|e| SlurmError::Io {
                what: format!("cannot submit stage `{}`", ps.name),
                source: std::io::Error::other(e.to_string()),
            })?;
            let record = JobRecord {
                stage: ps.name.clone(),
                job_id: id.clone(),
                log: jobs_dir.join("logs").join(format!("{}-{id}.log", ps.key)),
                script: script_path,
                after: after.clone(),
                submitted_at: crate::cache::manifest::rfc3339(SystemTime::now()),
                file: sub.file.to_path_buf(),
            };
            jobs::update(&root, sub.experiment, |f| {
                f.jobs.insert(ps.key.as_str().to_owned(), record)
            })
            .map_err(io("cannot record the job"))?;
            on_event(&SlurmEvent::Submitted {
                stage: ps.name.clone(),
                job: id.clone(),
                after,
                key: ps.key.short().to_owned(),
            });
            out.job_of[i] = Some(id);
            out.submitted[i] = true;
            out.n_submitted += 1;
        }
        Ok(out)
    }

    /// Polls every `poll` until no job of `submitted` is queued or running (or `cancel` is
    /// set), then turns each node into an outcome like a local run's.
    pub fn wait(
        &self,
        sub: &Submission<'_>,
        submitted: &Submitted,
        cancel: &AtomicBool,
        poll: Duration,
        on_event: &dyn Fn(&SlurmEvent),
    ) -> Result<RunReport, Interrupted> {
        let (plan, store) = (sub.plan, sub.store);
        let records = jobs::read(store.root(), sub.experiment).unwrap_or_default();
        let mut last: BTreeMap<usize, NodeState> = BTreeMap::new();
        let states = loop {
            let mut live = false;
            let mut now = BTreeMap::new();
            for (i, ps) in plan.stages.iter().enumerate() {
                let Some(job) = &submitted.job_of[i] else {
                    continue;
                };
                let state = self.node_state(store, ps, records.jobs.get(ps.key.as_str()));
                live |= matches!(&state, NodeState::Job(s) if s.is_live());
                if last.get(&i) != Some(&state) {
                    on_event(&SlurmEvent::Changed {
                        stage: ps.name.clone(),
                        job: job.clone(),
                        state: state.clone(),
                    });
                }
                now.insert(i, state);
            }
            last = now;
            if !live {
                break last;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(Interrupted);
            }
            std::thread::sleep(poll);
        };
        if let Some(remote) = sub.remote {
            for (i, ps) in plan.stages.iter().enumerate() {
                if submitted.submitted[i] && store.get(&ps.key).is_none() {
                    pull_finished(remote, store, sub.runs_dir, ps);
                }
            }
        }
        let mut results = Vec::new();
        for (i, ps) in plan.stages.iter().enumerate() {
            let record = records.jobs.get(ps.key.as_str());
            let job = record.map_or("?", |r| r.job_id.as_str());
            let outcome = match store.get(&ps.key) {
                Some(a) if submitted.submitted[i] => Outcome::Ran {
                    key: ps.key.clone(),
                    duration: Duration::from_secs_f64(a.manifest.duration_s.max(0.0)),
                    dir: a.dir,
                },
                Some(a) => Outcome::Hit {
                    key: ps.key.clone(),
                    dir: a.dir,
                    remote: false,
                },
                None => match states.get(&i) {
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
                                error: format!("job {job} was cancelled"),
                            }
                        }
                    }
                    Some(state) => {
                        let (word, detail) = state.describe();
                        let mut error = format!(
                            "job {job} {word}{}",
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
                },
            };
            results.push((ps.name.clone(), outcome));
        }
        Ok(RunReport { results })
    }

    /// Cancels the queued and running jobs among `records` for the plan's stages; returns
    /// (stage, job id, state word) for each.
    pub fn cancel(
        &self,
        plan: &Plan,
        records: &jobs::JobsFile,
    ) -> Result<Vec<(String, String, &'static str)>, SlurmError> {
        let mut live = Vec::new();
        for ps in &plan.stages {
            let Some(r) = records.jobs.get(ps.key.as_str()) else {
                continue;
            };
            if let Some(state) = self.api.state(&r.job_id).filter(JobState::is_live) {
                live.push((ps.name.clone(), r.job_id.clone(), state.word()));
            }
        }
        let ids: Vec<String> = live.iter().map(|(_, id, _)| id.clone()).collect();
        self.api.cancel(&ids)?;
        Ok(live)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use crate::config::load_sweep_str;
    use crate::registry::Registry;
    use crate::scheduler::{plan_sweep, PlanOptions};
    use crate::stage::{Role, Stage, StageCx};
    use std::sync::Mutex;

    /// A Slurm that numbers jobs from 1 and answers states from a table.
    #[derive(Default)]
    struct FakeSlurm {
        scripts: Mutex<Vec<String>>,
        states: Mutex<BTreeMap<String, JobState>>,
        cancelled: Mutex<Vec<String>>,
    }

    impl SlurmApi for std::sync::Arc<FakeSlurm> {
        fn submit(&self, script: &Path) -> Result<String, SlurmError> {
            let mut scripts = self.scripts.lock().unwrap();
            scripts.push(std::fs::read_to_string(script).unwrap());
            let id = scripts.len().to_string();
            self.states
                .lock()
                .unwrap()
                .insert(id.clone(), JobState::Pending("Dependency".into()));
            Ok(id)
        }
        fn state(&self, job_id: &str) -> Option<JobState> {
            self.states.lock().unwrap().get(job_id).cloned()
        }
        fn cancel(&self, job_ids: &[String]) -> Result<(), SlurmError> {
            self.cancelled
                .lock()
                .unwrap()
                .extend(job_ids.iter().cloned());
            Ok(())
        }
    }

    #[derive(Clone, Default, PartialEq, Debug, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct NoParams {}

    struct Step;
    impl Stage for Step {
        const KIND: &'static str = "step";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "test";
        type Params = NoParams;
        fn roles() -> &'static [Role] {
            const ROLES: &[Role] = &[Role {
                name: "after",
                required: false,
                doc: "",
            }];
            ROLES
        }
        fn run(_: &NoParams, _: &mut StageCx<'_>) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn source(text: &str) -> std::sync::Arc<crate::config::SourceFile> {
        std::sync::Arc::new(crate::config::SourceFile {
            display_path: "e.toml".into(),
            text: text.to_owned(),
        })
    }

    #[test]
    fn submits_upstream_first_with_afterok_records_jobs_and_reports_like_a_local_run() {
        let tmp = tempfile::tempdir().unwrap();
        let registry = Registry::new().with::<Step>();
        let text = "[experiment]\nname = \"e\"\n[stage.a]\nkind = \"step\"\n[stage.b]\nkind = \"step\"\nfrom = { after = \"a\" }\n";
        let file = tmp.path().join("e.toml");
        std::fs::write(&file, text).unwrap();
        let sweep = load_sweep_str(source(text), &file, &registry, &[], &[], None).unwrap();
        let store = CacheStore::open(&tmp.path().join("cache")).unwrap();
        let runs = tmp.path().join("runs");
        let plan = plan_sweep(&sweep, &store, &runs, &PlanOptions::default())
            .unwrap()
            .plan;
        let fake = std::sync::Arc::new(FakeSlurm::default());
        let executor = SlurmExecutor::new(Box::new(fake.clone()));
        let sub = Submission {
            experiment: "e",
            file: &file,
            config: &sweep.base.executor,
            plan: &plan,
            store: &store,
            runs_dir: &runs,
            chdir: tmp.path().to_path_buf(),
            command: JobCommand {
                before: vec!["vaepipe".into(), "run-stage".into(), "e.toml".into()],
                after: vec!["--threads".into(), "1".into()],
            },
            remote: None,
        };
        let events = Mutex::new(Vec::new());
        let record = |e: &SlurmEvent| events.lock().unwrap().push(e.clone());
        let submitted = executor.submit(&sub, &record).unwrap();
        assert_eq!(submitted.job_of, [Some("1".into()), Some("2".into())]);
        let scripts = fake.scripts.lock().unwrap().clone();
        assert!(!scripts[0].contains("--dependency"), "{}", scripts[0]);
        assert!(
            scripts[1].contains("#SBATCH --dependency=afterok:1\n"),
            "{}",
            scripts[1]
        );
        let b_key = plan.stages[1].key.as_str();
        assert!(
            scripts[1].contains(&format!(
                "vaepipe run-stage e.toml --stage b --key {b_key} --threads 1\n"
            )),
            "{}",
            scripts[1]
        );
        let records = jobs::read(store.root(), "e").unwrap();
        assert_eq!(records.jobs[b_key].after, ["1"]);

        // A second submission waits on the live jobs instead of submitting them again.
        let again = executor.submit(&sub, &record).unwrap();
        assert_eq!((again.n_submitted, again.n_queued), (0, 2));
        assert_eq!(fake.scripts.lock().unwrap().len(), 2);

        // `a` fails; Slurm cancels `b` (its dependency can never be met).
        fake.states
            .lock()
            .unwrap()
            .insert("1".into(), JobState::Failed("FAILED, exit code 1:0".into()));
        fake.states
            .lock()
            .unwrap()
            .insert("2".into(), JobState::Cancelled);
        let report = executor
            .wait(
                &sub,
                &submitted,
                &AtomicBool::new(false),
                Duration::ZERO,
                &record,
            )
            .unwrap();
        assert!(
            matches!(&report.results[0].1, Outcome::Failed { error } if error.starts_with("job 1 failed: FAILED, exit code 1:0")),
            "{:?}",
            report.results
        );
        assert!(
            matches!(&report.results[1].1, Outcome::Skipped { .. }),
            "{:?}",
            report.results
        );
        let events = events.lock().unwrap();
        assert!(events.contains(&SlurmEvent::Submitted {
            stage: "b".into(),
            job: "2".into(),
            after: vec!["1".into()],
            key: plan.stages[1].key.short().to_owned(),
        }));
        assert!(events.iter().any(|e| matches!(
            e,
            SlurmEvent::AlreadyQueued { stage, job, .. } if stage == "a" && job == "1"
        )));
    }

    #[test]
    fn cancel_cancels_only_live_jobs() {
        let fake = std::sync::Arc::new(FakeSlurm::default());
        fake.states
            .lock()
            .unwrap()
            .insert("7".into(), JobState::Running);
        fake.states
            .lock()
            .unwrap()
            .insert("8".into(), JobState::Completed);
        let tmp = tempfile::tempdir().unwrap();
        let registry = Registry::new().with::<Step>();
        let text =
            "[stage.a]\nkind = \"step\"\n[stage.b]\nkind = \"step\"\nfrom = { after = \"a\" }\n";
        let file = tmp.path().join("e.toml");
        let sweep = load_sweep_str(source(text), &file, &registry, &[], &[], None).unwrap();
        let store = CacheStore::open(&tmp.path().join("cache")).unwrap();
        let plan = plan_sweep(&sweep, &store, tmp.path(), &PlanOptions::default())
            .unwrap()
            .plan;
        let mut records = jobs::JobsFile::default();
        for (ps, id) in plan.stages.iter().zip(["7", "8"]) {
            records.jobs.insert(
                ps.key.as_str().to_owned(),
                JobRecord {
                    stage: ps.name.clone(),
                    job_id: id.into(),
                    log: tmp.path().join("log"),
                    script: tmp.path().join("s.sh"),
                    after: vec![],
                    submitted_at: String::new(),
                    file: file.clone(),
                },
            );
        }
        let executor = SlurmExecutor::new(Box::new(fake.clone()));
        let done = executor.cancel(&plan, &records).unwrap();
        assert_eq!(done, [("a".to_owned(), "7".to_owned(), "running")]);
        assert_eq!(*fake.cancelled.lock().unwrap(), ["7"]);
    }
}
