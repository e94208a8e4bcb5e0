//! The Slurm commands the executor shells out to ([`SlurmCommands`], the real [`SlurmApi`]):
//! `sbatch --parsable` to submit, `scontrol show job -o` for a job's state (it needs no
//! accounting daemon; `sacct` is the fallback for jobs `slurmctld` has forgotten), and `scancel`;
//! and the parsers of their output ([`JobState`]), unit-tested on text.

use std::path::Path;
use std::process::Command;

use super::slurm::{SlurmApi, SlurmError};

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
pub struct SlurmCommands;

impl SlurmCommands {
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
}

impl SlurmApi for SlurmCommands {
    /// `sbatch --parsable SCRIPT` → the job id.
    fn submit(&self, script: &Path) -> Result<String, SlurmError> {
        let script = script.to_string_lossy();
        let out = self.checked("sbatch", &["--parsable", &script])?;
        parse_parsable(&out).ok_or(SlurmError::NoJobId(out))
    }

    /// What Slurm says about a job: `scontrol` while `slurmctld` remembers it, else `sacct`
    /// (needs accounting); `None` when neither knows it.
    fn state(&self, job_id: &str) -> Option<JobState> {
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
    fn cancel(&self, job_ids: &[String]) -> Result<(), SlurmError> {
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
}
