//! `vaepipe verify FILE [--stage S]`: checks the experiment against `FILE.lock` like
//! `run --locked`, then recomputes stages into a scratch cache and compares output hashes (what
//! that proves, and when outputs are bitwise repeatable, is in `crate::lock`'s docs).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::CacheStore;
use crate::lock::{self, LockError, VerifyOptions};
use crate::registry::Registry;
use crate::scheduler::{self, PlanOptions};

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The experiment file (its lock is `FILE.lock`).
    pub file: PathBuf,
    /// Recompute only these stages (`train`, or `<variant>/train` in a sweep) [default: all].
    #[arg(long, value_name = "STAGE")]
    pub stage: Vec<String>,
    /// Override a param, as when the lock was written.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Device to recompute on [default: the experiment's `device`, else `cpu`].
    #[arg(long)]
    pub device: Option<String>,
    /// Intra-op threads [default: the count each stage's locked entry was computed with].
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn verify(
    args: VerifyArgs,
    global: &GlobalArgs,
    registry: &Registry,
    hooks: &super::Hooks,
) -> Result<(), CliError> {
    let sweep = super::search::load_locked(&args.file, registry, &args.set, &args.sweep, global)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&sweep.base)))?;
    let plan = scheduler::plan_sweep(
        &sweep,
        &store,
        &super::runs_dir(global),
        &PlanOptions::default(),
    )?;
    let lock = super::check_lock(&args.file, &sweep, &plan, &store)?;
    let on_stage = |id: &str| tracing::info!("recomputing `{id}` into a scratch cache");
    let options = VerifyOptions {
        stages: args.stage,
        device: args
            .device
            .or_else(|| sweep.base.device.clone())
            .unwrap_or_else(|| "cpu".to_owned()),
        threads: args.threads,
        compare: hooks.output_comparator(),
        tool_version: super::tool_version(),
        on_stage: &on_stage,
    };
    let results = lock::verify(&lock, &sweep, &plan, &store, &options).map_err(|e| match e {
        LockError::UnknownStage { .. } | LockError::UpstreamMissing { .. } => {
            CliError::Usage(e.to_string())
        }
        other => CliError::Failed(other.to_string()),
    })?;
    let width = results.iter().map(|r| r.stage.len()).max().unwrap_or(0);
    let mut bad = 0;
    for r in &results {
        if r.bitwise_equal() {
            println!(
                "{:width$}  bitwise equal ({} file{}, {:.2}s)",
                r.stage,
                r.files,
                if r.files == 1 { "" } else { "s" },
                r.elapsed_s
            );
            continue;
        }
        bad += 1;
        if let Some(e) = &r.error {
            println!("{:width$}  not recomputed: {e}", r.stage);
            continue;
        }
        println!(
            "{:width$}  differs: {} of {} file{}",
            r.stage,
            r.differing.len() + r.missing.len() + r.extra.len(),
            r.files,
            if r.files == 1 { "" } else { "s" }
        );
        for d in &r.differing {
            match &d.detail {
                Some(detail) => println!("{:width$}    `{}`: {detail}", "", d.path),
                None => println!("{:width$}    `{}`: blake3 differs", "", d.path),
            }
        }
        for m in &r.missing {
            println!("{:width$}    `{m}`: not produced by the recomputation", "");
        }
        for x in &r.extra {
            println!("{:width$}    `{x}`: produced, but not in the lock", "");
        }
    }
    println!(
        "verified {} stage{}: {} bitwise equal, {bad} different",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        results.len() - bad
    );
    if bad == 0 {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{bad} stage{} did not reproduce the locked outputs bitwise; see `vaepipe verify`'s docs for when that is expected (GPU, other thread count)",
            if bad == 1 { "" } else { "s" }
        )))
    }
}
