//! `vaepipe plan FILE`: one line per stage, `fresh` or `dirty` with the reason as a sentence;
//! with `-v`, each stage's key and the exact preimage that was hashed.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, GlobalArgs};
use crate::cache::CacheStore;
use crate::config::Experiment;
use crate::graph::StageGraph;
use crate::registry::Registry;
use crate::scheduler::{self, Freshness, Plan, PlanOptions};

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a param: `stage.<stage>.<param>=<value>` (type-checked), or `experiment.seed=<n>`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Plan only these stages and what they need upstream.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Show these stages as rerun even when fresh.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
}

pub fn plan(args: PlanArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let exp = super::load(&args.file, registry, &args.set)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&exp)))?;
    let graph = StageGraph::new(&exp);
    let options = PlanOptions {
        only: args.only,
        force: args.force,
    };
    let plan = scheduler::plan(&exp, &graph, &store, &super::runs_dir(global), &options)?;
    print!("{}", render_plan(&exp, &plan, global.verbose > 0));
    Ok(())
}

/// The text `plan` prints (also used by `run -v` before running).
pub fn render_plan(exp: &Experiment, plan: &Plan, verbose: bool) -> String {
    let mut out = String::new();
    for set in &exp.overrides {
        let _ = writeln!(out, "with --set {set}");
    }
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for ps in &plan.stages {
        match &ps.freshness {
            Freshness::Fresh => {
                let _ = writeln!(out, "{:width$}  fresh", ps.name);
            }
            Freshness::Dirty(reasons) => {
                let text: Vec<String> = reasons.iter().map(|r| r.present()).collect();
                let _ = writeln!(out, "{:width$}  dirty  {}", ps.name, text.join("; "));
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
