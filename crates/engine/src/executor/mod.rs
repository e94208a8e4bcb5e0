//! Where dirty stages run. The local executor is the scheduler itself ([`crate::scheduler`]):
//! threads in this process. The Slurm executor ([`slurm`]) submits each dirty stage as an `sbatch`
//! job that runs this same binary's hidden `run-stage` verb on one stage by key, with
//! `--dependency=afterok:` on the jobs of its upstream stages; the job takes the same per-key
//! lock and commits with the same atomic rename as a local run, so runs on a shared cache never
//! compute a key twice at once. Submissions are recorded under `<cache>/jobs/` ([`jobs`]), so
//! `vaepipe status`/`cancel` work after the submitting process has exited.
//!
//! How a stage runs is never part of its key: nothing here reaches a key.

pub mod jobs;
pub mod slurm;

use std::collections::BTreeMap;

/// `[executor] kind` / `run --executor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Threads in this process (the default).
    #[default]
    Local,
    /// One `sbatch` job per dirty stage.
    Slurm,
}

impl ExecutorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// The resolved `[executor]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorConfig {
    pub kind: ExecutorKind,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// `sbatch --time`, as written.
    pub time: Option<String>,
    /// Extra `sbatch` arguments for every job.
    pub extra: Vec<String>,
    /// Stage kind → its extra `sbatch` arguments (`--gres=gpu:1`), in file order.
    pub resources: BTreeMap<String, Vec<String>>,
}

/// `sbatch` options vaepipe sets itself; `[executor.resources.<kind>]` may not set them.
pub const RESERVED_SBATCH_OPTIONS: &[&str] = &[
    "dependency",
    "output",
    "error",
    "job-name",
    "parsable",
    "chdir",
    "wrap",
    "kill-on-invalid-dep",
];

/// True for a Slurm time limit `sbatch --time` accepts: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`,
/// `D-H:M:S`, or `UNLIMITED`/`INFINITE`.
pub fn valid_time(t: &str) -> bool {
    if matches!(t, "UNLIMITED" | "INFINITE" | "unlimited" | "infinite") {
        return true;
    }
    let numbers = |s: &str, max: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    match t.split_once('-') {
        Some((days, rest)) => {
            !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) && numbers(rest, 3)
        }
        None => numbers(t, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_formats() {
        for ok in [
            "30",
            "30:00",
            "1:00:00",
            "2-0",
            "2-12:00",
            "1-00:00:00",
            "UNLIMITED",
        ] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "1-", "a-1", "1::2"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }
}
