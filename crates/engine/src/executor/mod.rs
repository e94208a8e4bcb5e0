//! Where dirty stages run ([`Executor`]). The local executor is the scheduler itself
//! ([`crate::scheduler::execute_variants`]): threads in this process. The Slurm executor
//! ([`slurm`]) submits each dirty stage as an `sbatch` job that runs this same binary's hidden
//! `run-stage` verb on one stage by key, with `--dependency=afterok:` on the jobs of its upstream
//! stages; the job takes the same per-key lock and commits with the same atomic rename as a
//! local run, so runs on a shared cache never compute a key twice at once. Submissions are
//! recorded under `<cache>/jobs/` ([`jobs`]), so `vaepipe status`/`cancel` work after the
//! submitting process has exited. Job scripts are in [`job_script`], the Slurm commands behind
//! the [`slurm::SlurmApi`] trait in [`slurm_commands`].
//!
//! A third executor is one new file here, a variant of [`Executor`] and [`ExecutorKind`], and
//! its keys in `[executor]` ([`crate::config::executor`]). How a stage runs is never part of its
//! key: nothing here reaches a key.

pub mod job_script;
pub mod jobs;
pub mod slurm;
pub mod slurm_commands;

pub use crate::config::executor::{
    reserved_option, valid_time, ExecutorConfig, ExecutorKind, RESERVED_SBATCH_OPTIONS,
};

/// The executor a run uses.
pub enum Executor {
    /// Threads in this process: [`crate::scheduler::execute_variants`].
    Local,
    /// One `sbatch` job per dirty stage.
    Slurm(slurm::SlurmExecutor),
}

impl Executor {
    /// The executor for `kind`, with the real Slurm commands.
    pub fn new(kind: ExecutorKind) -> Executor {
        match kind {
            ExecutorKind::Local => Executor::Local,
            ExecutorKind::Slurm => Executor::Slurm(slurm::SlurmExecutor::new(Box::new(
                slurm_commands::SlurmCommands,
            ))),
        }
    }
}
