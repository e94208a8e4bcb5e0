//! `vaepipe lock FILE`: writes `FILE.lock` beside the experiment (format in `crate::lock`).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::CacheStore;
use crate::lock::{self, LockError};
use crate::registry::Registry;
use crate::scheduler::{self, PlanOptions};

#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a param, as for `run`; the lock records the resolved result.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

pub fn lock(args: LockArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let sweep = super::load_sweep(&args.file, registry, &args.set, &args.sweep, global)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&sweep.base)))?;
    let plan = scheduler::plan_sweep(
        &sweep,
        &store,
        &super::runs_dir(global),
        &PlanOptions::default(),
    )?;
    let mut arguments: Vec<String> = args.set.iter().map(|s| format!("--set {s}")).collect();
    arguments.extend(args.sweep.sweep.iter().map(|s| format!("--sweep {s}")));
    if let Some(m) = args.sweep.sweep_mode {
        arguments.push(format!("--sweep-mode {}", m.as_str()));
    }
    let lock = lock::build(&sweep, &plan, &store, &super::tool_version(), arguments).map_err(
        |e| match e {
            LockError::NotRun(_) => CliError::Failed(format!(
                "{e}\n  help: `vaepipe run {}` (with the same flags), then lock",
                args.file.display()
            )),
            other => CliError::Failed(other.to_string()),
        },
    )?;
    let path = lock::lock_path(&args.file);
    lock.write(&path)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let outputs: usize = lock.stages.values().map(|s| s.outputs.len()).sum();
    println!(
        "wrote {}: {} input{}, {} stage{}, {outputs} output file{}",
        path.display(),
        lock.inputs.len(),
        if lock.inputs.len() == 1 { "" } else { "s" },
        lock.stages.len(),
        if lock.stages.len() == 1 { "" } else { "s" },
        if outputs == 1 { "" } else { "s" },
    );
    Ok(())
}
