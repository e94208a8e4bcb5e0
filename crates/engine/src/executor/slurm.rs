//! The Slurm executor's pieces: job scripts ([`JobScript`]), and the Slurm commands it shells out
//! to ([`Slurm`]): `sbatch --parsable` to submit, `scontrol show job -o` for a job's state (it
//! needs no accounting daemon; `sacct` is the fallback for jobs `slurmctld` has forgotten), and
//! `scancel`. The orchestration (which stages, which dependencies, the records) lives in the
//! CLI (`cli::slurm`); everything here is small and unit-tested on text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ExecutorConfig;

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
}

/// One stage's job script: `#SBATCH` lines from `[executor]`, then the `run-stage` command, then
/// the exit status written beside the log.
#[derive(Debug, Clone)]
pub struct JobScript<'a> {
    pub experiment: &'a str,
    /// The plan node's name (`b`, `alfa-0.5/b`).
    pub stage: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
    /// `--output`; `%j` is the job id.
    pub log_pattern: PathBuf,
    /// Where the job runs (the submitter's working directory).
    pub chdir: PathBuf,
    /// Job ids of upstream stages submitted in the same run (`afterok`).
    pub after: Vec<String>,
    /// The command line the job runs.
    pub command: Vec<String>,
    pub config: &'a ExecutorConfig,
}

impl JobScript<'_> {
    /// The script's text.
    pub fn render(&self) -> String {
        let mut s = String::from("#!/bin/bash\n");
        let _ = writeln!(
            s,
            "# vaepipe job: stage `{}` (kind `{}`) of experiment `{}`, key {}",
            self.stage, self.kind, self.experiment, self.key
        );
        let mut opt = |o: String| {
            let _ = writeln!(s, "#SBATCH {o}");
        };
        opt(format!(
            "--job-name={}",
            sbatch_word(&job_name(self.experiment, self.stage))
        ));
        opt(format!(
            "--output={}",
            sbatch_word(&self.log_pattern.to_string_lossy())
        ));
        opt(format!(
            "--chdir={}",
            sbatch_word(&self.chdir.to_string_lossy())
        ));
        if let Some(p) = &self.config.partition {
            opt(format!("--partition={}", sbatch_word(p)));
        }
        if let Some(a) = &self.config.account {
            opt(format!("--account={}", sbatch_word(a)));
        }
        if let Some(t) = &self.config.time {
            opt(format!("--time={}", sbatch_word(t)));
        }
        if !self.after.is_empty() {
            // A failed upstream cancels this job instead of leaving it pending forever.
            opt("--kill-on-invalid-dep=yes".to_owned());
            opt(format!("--dependency=afterok:{}", self.after.join(":")));
        }
        for e in &self.config.extra {
            opt(sbatch_word(e));
        }
        for r in self.config.resources.get(self.kind).into_iter().flatten() {
            opt(sbatch_word(r));
        }
        s.push('\n');
        let command: Vec<String> = self.command.iter().map(|a| shell_quote(a)).collect();
        s.push_str(&command.join(" "));
        s.push('\n');
        let rc = self.log_pattern.with_extension("rc");
        let rc = rc.to_string_lossy();
        // `%j` in the pattern is the job id; the shell knows it as $SLURM_JOB_ID.
        let rc = match rc.split_once("%j") {
            Some((before, after)) => format!(
                "{}\"${{SLURM_JOB_ID}}\"{}",
                shell_quote(before),
                shell_quote(after)
            ),
            None => shell_quote(&rc),
        };
        let _ = writeln!(s, "rc=$?\necho \"$rc\" > {rc}\nexit \"$rc\"");
        s
    }
}

/// A Slurm job name for a stage: `vaepipe:<experiment>:<stage>`, without spaces.
pub fn job_name(experiment: &str, stage: &str) -> String {
    format!("vaepipe:{experiment}:{stage}")
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// Quotes a word for bash (single quotes unless it is plainly safe).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%'
                )
        });
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// An `#SBATCH` word: sbatch splits those lines at whitespace, honouring double quotes.
fn sbatch_word(s: &str) -> String {
    if s.chars().any(char::is_whitespace) {
        format!("\"{}\"", s.replace('"', "\\\""))
    } else {
        s.to_owned()
    }
}

/// The job id in `sbatch --parsable`'s output (`123` or `123;cluster`).
pub fn parse_parsable(stdout: &str) -> Option<String> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let id = line.split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

/// A job's state, as vaepipe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Queued; the reason (`Dependency`, `Resources`, `JobHeldUser`...).
    Pending(String),
    Running,
    Completed,
    /// `FAILED`, `TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`...: the Slurm state and exit code.
    Failed(String),
    Cancelled,
    /// Slurm no longer knows the job and it left no exit status.
    Unknown,
}

impl JobState {
    /// Still queued or running: `cancel` cancels it, `run` does not submit its key again.
    pub fn is_live(&self) -> bool {
        matches!(self, JobState::Pending(_) | JobState::Running)
    }

    pub fn word(&self) -> &'static str {
        match self {
            JobState::Pending(_) => "pending",
            JobState::Running => "running",
            JobState::Completed => "done",
            JobState::Failed(_) => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Unknown => "unknown",
        }
    }

    /// From a Slurm state name (`scontrol`'s `JobState`, `sacct`'s `State`), with the pending
    /// reason and exit code where known.
    pub fn from_slurm(state: &str, reason: &str, exit_code: &str) -> JobState {
        let state = state.split_whitespace().next().unwrap_or("");
        match state {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
            | "SUSPENDED" => {
                // A dependency that can never be met leaves the job pending forever unless
                // `--kill-on-invalid-dep`; report it as what it is.
                if reason == "DependencyNeverSatisfied" {
                    JobState::Cancelled
                } else {
                    JobState::Pending(reason.to_owned())
                }
            }
            "RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => {
                JobState::Running
            }
            "COMPLETED" => JobState::Completed,
            "CANCELLED" | "REVOKED" | "PREEMPTED" => JobState::Cancelled,
            "" => JobState::Unknown,
            other => JobState::Failed(if exit_code.is_empty() {
                other.to_owned()
            } else {
                format!("{other}, exit code {exit_code}")
            }),
        }
    }
}

/// The value of `Key=` in `scontrol show job -o` output (fields are space-separated; a value
/// ends at the next space).
pub fn scontrol_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("{key}=");
    let mut from = 0;
    while let Some(pos) = line.get(from..)?.find(&needle) {
        let at = from + pos;
        let boundary = at == 0 || line[..at].ends_with(char::is_whitespace);
        let value_start = at + needle.len();
        if boundary {
            let rest = &line[value_start..];
            return Some(rest.split(char::is_whitespace).next().unwrap_or(""));
        }
        from = value_start;
    }
    None
}

/// The state in one line of `scontrol show job -o <id>`.
pub fn parse_scontrol(line: &str) -> Option<JobState> {
    let state = scontrol_field(line, "JobState")?;
    let reason = scontrol_field(line, "Reason").unwrap_or("");
    let exit = scontrol_field(line, "ExitCode").unwrap_or("");
    Some(JobState::from_slurm(state, reason, exit))
}

/// The state in `sacct -n -P -X -o State,ExitCode -j <id>` output (`FAILED|1:0`).
pub fn parse_sacct(stdout: &str) -> Option<JobState> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut parts = line.split('|');
    let state = parts.next()?.trim();
    let exit = parts.next().unwrap_or("").trim();
    Some(JobState::from_slurm(state, "", exit))
}

/// The Slurm commands, by name on `PATH`.
#[derive(Debug, Clone, Default)]
pub struct Slurm;

impl Slurm {
    fn output(&self, program: &str, args: &[&str]) -> Result<std::process::Output, SlurmError> {
        Command::new(program)
            .args(args)
            .output()
            .map_err(|source| SlurmError::Spawn {
                program: program.to_owned(),
                source,
            })
    }

    fn checked(&self, program: &str, args: &[&str]) -> Result<String, SlurmError> {
        let out = self.output(program, args)?;
        if !out.status.success() {
            return Err(SlurmError::Failed {
                command: format!("{program} {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `sbatch --parsable SCRIPT` → the job id.
    pub fn submit(&self, script: &Path) -> Result<String, SlurmError> {
        let script = script.to_string_lossy();
        let out = self.checked("sbatch", &["--parsable", &script])?;
        parse_parsable(&out).ok_or(SlurmError::NoJobId(out))
    }

    /// What Slurm says about a job: `scontrol` while `slurmctld` remembers it, else `sacct`
    /// (needs accounting); `None` when neither knows it.
    pub fn state(&self, job_id: &str) -> Option<JobState> {
        if let Ok(out) = self.checked("scontrol", &["show", "job", "-o", job_id]) {
            if let Some(state) = out.lines().find_map(parse_scontrol) {
                return Some(state);
            }
        }
        let out = self
            .checked(
                "sacct",
                &["-n", "-P", "-X", "-o", "State,ExitCode", "-j", job_id],
            )
            .ok()?;
        parse_sacct(&out).filter(|s| *s != JobState::Unknown)
    }

    /// `scancel ID...`.
    pub fn cancel(&self, job_ids: &[String]) -> Result<(), SlurmError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let args: Vec<&str> = job_ids.iter().map(String::as_str).collect();
        self.checked("scancel", &args).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> ExecutorConfig {
        let mut c = ExecutorConfig {
            kind: super::super::ExecutorKind::Slurm,
            partition: Some("gpu".into()),
            account: Some("lab".into()),
            time: Some("4:00:00".into()),
            extra: vec!["--qos=long".into()],
            ..ExecutorConfig::default()
        };
        c.resources.insert(
            "train-vae".into(),
            vec!["--gres=gpu:1".into(), "--cpus-per-task=4".into()],
        );
        c
    }

    fn script<'a>(config: &'a ExecutorConfig, kind: &'a str, after: &[&str]) -> JobScript<'a> {
        JobScript {
            experiment: "smile",
            stage: "alfa-0.5/train",
            kind,
            key: "abc123",
            log_pattern: "/cache/jobs/logs/abc123-%j.log".into(),
            chdir: "/home/me/project dir".into(),
            after: after.iter().map(|s| (*s).to_owned()).collect(),
            command: vec![
                "/usr/bin/vaepipe".into(),
                "run-stage".into(),
                "exp.toml".into(),
                "--set".into(),
                "stage.a.text=it's".into(),
            ],
            config,
        }
    }

    #[test]
    fn job_script_has_the_executor_options_dependencies_and_per_kind_resources() {
        let c = config();
        let text = script(&c, "train-vae", &["12", "13"]).render();
        assert_eq!(
            text,
            "#!/bin/bash\n\
             # vaepipe job: stage `alfa-0.5/train` (kind `train-vae`) of experiment `smile`, key abc123\n\
             #SBATCH --job-name=vaepipe:smile:alfa-0.5/train\n\
             #SBATCH --output=/cache/jobs/logs/abc123-%j.log\n\
             #SBATCH --chdir=\"/home/me/project dir\"\n\
             #SBATCH --partition=gpu\n\
             #SBATCH --account=lab\n\
             #SBATCH --time=4:00:00\n\
             #SBATCH --kill-on-invalid-dep=yes\n\
             #SBATCH --dependency=afterok:12:13\n\
             #SBATCH --qos=long\n\
             #SBATCH --gres=gpu:1\n\
             #SBATCH --cpus-per-task=4\n\
             \n\
             /usr/bin/vaepipe run-stage exp.toml --set 'stage.a.text=it'\\''s'\n\
             rc=$?\n\
             echo \"$rc\" > /cache/jobs/logs/abc123-\"${SLURM_JOB_ID}\".rc\n\
             exit \"$rc\"\n"
        );
    }

    #[test]
    fn job_script_without_upstream_jobs_has_no_dependency_and_other_kinds_no_resources() {
        let c = config();
        let text = script(&c, "encode", &[]).render();
        assert!(!text.contains("--dependency"), "{text}");
        assert!(!text.contains("--kill-on-invalid-dep"), "{text}");
        assert!(!text.contains("--gres"), "{text}");
        let plain = ExecutorConfig::default();
        let text = script(&plain, "train-vae", &["7"]).render();
        assert!(!text.contains("--partition"), "{text}");
        assert!(text.contains("#SBATCH --dependency=afterok:7\n"), "{text}");
    }

    #[test]
    fn parses_sbatch_scontrol_and_sacct_output() {
        assert_eq!(parse_parsable("123\n"), Some("123".into()));
        assert_eq!(parse_parsable("45;cluster\n"), Some("45".into()));
        assert_eq!(parse_parsable("Submitted batch job 4\n"), None);
        assert_eq!(parse_parsable(""), None);

        let pending = "JobId=2 JobName=vaepipe:x:b UserId=root(0) JobState=PENDING Reason=Dependency Dependency=afterok:1(unfulfilled) ExitCode=0:0";
        assert_eq!(
            parse_scontrol(pending),
            Some(JobState::Pending("Dependency".into()))
        );
        assert_eq!(
            scontrol_field(pending, "Dependency"),
            Some("afterok:1(unfulfilled)")
        );
        // `Reason=` inside another field's value is not the field.
        assert_eq!(
            scontrol_field("Comment=Reason=x Reason=None", "Reason"),
            Some("None")
        );
        let failed = "JobId=3 JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0";
        assert_eq!(
            parse_scontrol(failed),
            Some(JobState::Failed("FAILED, exit code 1:0".into()))
        );
        let never = "JobId=4 JobState=PENDING Reason=DependencyNeverSatisfied";
        assert_eq!(parse_scontrol(never), Some(JobState::Cancelled));
        assert_eq!(
            parse_scontrol("slurm_load_jobs error: Invalid job id"),
            None
        );
        assert_eq!(parse_sacct("COMPLETED|0:0\n"), Some(JobState::Completed));
        assert_eq!(
            parse_sacct("CANCELLED by 0|0:15\n"),
            Some(JobState::Cancelled)
        );
        assert_eq!(
            parse_sacct("TIMEOUT|0:0\n"),
            Some(JobState::Failed("TIMEOUT, exit code 0:0".into()))
        );
        assert_eq!(parse_sacct(""), None);
        assert!(JobState::Pending(String::new()).is_live());
        assert!(!JobState::Completed.is_live());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a/b-c.d"), "a/b-c.d");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(job_name("e x", "a/b"), "vaepipe:e_x:a/b");
    }
}
