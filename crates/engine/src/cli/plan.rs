//! `vaepipe plan FILE`: one line per stage, `fresh` or `dirty` with the reason as a sentence;
//! with `-v`, each stage's key and the exact preimage that was hashed. For a sweep: one line per
//! distinct stage of the whole sweep's DAG, saying how many variants share it. With a remote
//! cache, a dirty stage whose key the remote has is shown as `remote` (it would be downloaded).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::{CacheStore, StageKey};
use crate::config::Experiment;
use crate::registry::Registry;
use crate::scheduler::{self, Freshness, Plan, PlanOptions, SweepPlan};

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a param: `stage.<stage>.<param>=<value>` (type-checked), or `experiment.seed=<n>`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Plan only these stages and what they need upstream.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Show these stages as rerun even when fresh.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
}

pub fn plan(args: PlanArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let sweep = super::load_sweep(&args.file, registry, &args.set, &args.sweep, global)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&sweep.base)))?;
    let options = PlanOptions {
        only: args.only,
        force: args.force,
    };
    let plan = scheduler::plan_sweep(&sweep, &store, &super::runs_dir(global), &options)?;
    if sweep.is_sweep() {
        print!("{}", render_sweep_header(&sweep, &plan));
    }
    print!("{}", super::search::render_trials(&sweep));
    // Which dirty stages the remote cache would serve (one HEAD request each).
    let mut on_remote = HashSet::new();
    if let Some(remote) = super::remote_for(global, Some(&sweep.base))? {
        for ps in &plan.plan.stages {
            if matches!(ps.freshness, Freshness::Dirty(_)) && !ps.forced {
                match remote.has(&ps.key) {
                    Ok(true) => {
                        on_remote.insert(ps.key.clone());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!("cannot ask the remote cache: {e}");
                        break;
                    }
                }
            }
        }
    }
    print!(
        "{}",
        render_plan(&sweep.base, &plan.plan, global.verbose > 0, &on_remote)
    );
    Ok(())
}

/// `sweep: 4 variants (grid over alfa × beta); 7 distinct stages of 12`.
pub fn render_sweep_header(sweep: &crate::config::Sweep, plan: &SweepPlan) -> String {
    let total: usize = plan.variant_stages.iter().map(Vec::len).sum();
    let labels: Vec<&str> = sweep.axes.iter().map(|a| a.label.as_str()).collect();
    format!(
        "sweep: {} variants ({} over {}); {} distinct stages of {total}\n",
        sweep.variants.len(),
        sweep.strategy_name(),
        labels.join(" × "),
        plan.plan.stages.len()
    )
}

/// The text `plan` prints; a dirty stage whose key is in `on_remote` says the remote cache
/// would serve it.
pub fn render_plan(
    exp: &Experiment,
    plan: &Plan,
    verbose: bool,
    on_remote: &HashSet<StageKey>,
) -> String {
    let mut out = String::new();
    for set in &exp.overrides {
        let _ = writeln!(out, "with --set {set}");
    }
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for ps in &plan.stages {
        let shared = if ps.users.len() > 1 {
            format!("  [{} variants]", ps.users.len())
        } else {
            String::new()
        };
        match &ps.freshness {
            Freshness::Fresh => {
                let _ = writeln!(out, "{:width$}  fresh{shared}", ps.name);
            }
            Freshness::Dirty(_) if on_remote.contains(&ps.key) => {
                let _ = writeln!(
                    out,
                    "{:width$}  remote  on the remote cache: would be downloaded, not computed{shared}",
                    ps.name
                );
            }
            Freshness::Dirty(reasons) => {
                let mut text: Vec<String> = reasons.iter().map(|r| r.present()).collect();
                text.extend(ps.warm_start.as_ref().map(|w| w.present()));
                let _ = writeln!(
                    out,
                    "{:width$}  dirty  {}{shared}",
                    ps.name,
                    text.join("; ")
                );
            }
        }
        if verbose {
            let _ = writeln!(out, "{:width$}    key       {}", "", ps.key);
            let _ = writeln!(
                out,
                "{:width$}    preimage  {}",
                "",
                ps.preimage.canonical_json()
            );
        }
    }
    out
}
