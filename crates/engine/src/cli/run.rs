//! `vaepipe run FILE`: plan, then execute, printing a line per stage as it starts and ends and
//! a summary (with each artifact's `metrics.json` scalars) at the end.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use super::{CliError, GlobalArgs};
use crate::cache::CacheStore;
use crate::graph::StageGraph;
use crate::registry::Registry;
use crate::scheduler::{self, Event, ExecuteOptions, Freshness, Outcome, PlanOptions};
use crate::stage::RunOptions;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a param: `stage.<stage>.<param>=<value>` (type-checked), or `experiment.seed=<n>`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run only these stages and what they need upstream.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Rerun these stages even when their entry exists (replacing it).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Stages to run at once [default: the number of CPUs]. Accelerator stages always run alone.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// `auto`, `cpu`, `cuda` or `cuda:N` [default: the experiment's `device`, else `auto`]. Not in keys.
    #[arg(long)]
    pub device: Option<String>,
    /// Intra-op threads for numeric work. Not in keys.
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: RunArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let started = Instant::now();
    let exp = super::load(&args.file, registry, &args.set)?;
    let store = CacheStore::open(&super::cache_dir(global, Some(&exp)))?;
    let runs_dir = super::runs_dir(global);
    let graph = StageGraph::new(&exp);
    let options = PlanOptions {
        only: args.only,
        force: args.force,
    };
    let plan = scheduler::plan(&exp, &graph, &store, &runs_dir, &options)?;
    for set in &exp.overrides {
        tracing::info!("with --set {set}");
    }
    for ps in &plan.stages {
        if let Freshness::Dirty(reasons) = &ps.freshness {
            let text: Vec<String> = reasons.iter().map(|r| r.present()).collect();
            tracing::debug!("stage `{}` is dirty: {}", ps.name, text.join("; "));
        }
    }

    let cancel = Arc::new(AtomicBool::new(false));
    install_signal_handlers(&cancel);
    let run_options = RunOptions {
        device: args
            .device
            .or_else(|| exp.device.clone())
            .unwrap_or_else(|| "auto".to_owned()),
        threads: args.threads,
        quiet: global.quiet,
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let exec = ExecuteOptions {
        run: &run_options,
        jobs,
        cancel: cancel.clone(),
        runs_dir: runs_dir.clone(),
        tool_version: format!("vaepipe {}", env!("CARGO_PKG_VERSION")),
    };
    let report = scheduler::execute(&exp, &plan, &store, &exec, &render_event);

    let (mut ran, mut hit, mut bad) = (0, 0, 0);
    for (name, outcome) in &report.results {
        match outcome {
            Outcome::Ran { .. } => ran += 1,
            Outcome::Hit { .. } => hit += 1,
            _ => bad += 1,
        }
        if let Some(dir) = outcome.dir() {
            let metrics = metrics_summary(&dir.join("metrics.json"));
            let link = runs_dir.join(&exp.name).join(name);
            let metrics = if metrics.is_empty() {
                String::new()
            } else {
                format!("  {metrics}")
            };
            println!("{name}: {}{metrics}", link.display());
        }
    }
    println!(
        "{}: {ran} ran, {hit} fresh, {bad} not completed in {:.2}s",
        exp.name,
        started.elapsed().as_secs_f64()
    );
    if report.cancelled() {
        return Err(CliError::Interrupted);
    }
    if !report.all_succeeded() {
        let failed: Vec<&str> = report
            .results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(CliError::Failed(format!(
            "stage{} {} failed; see the errors above",
            if failed.len() == 1 { "" } else { "s" },
            failed
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

fn render_event(event: &Event) {
    match event {
        Event::Waiting { stage, key } => tracing::info!(
            "waiting for another vaepipe run holding `{stage}` (key {}…)",
            key.short()
        ),
        Event::Started { stage, key } => {
            tracing::info!("stage `{stage}` started (miss, key {}…)", key.short())
        }
        Event::Finished {
            stage,
            outcome,
            elapsed,
        } => match outcome {
            Outcome::Hit { key, .. } => {
                tracing::info!(
                    "stage `{stage}` fresh (hit, key {}…) in {:.2}s",
                    key.short(),
                    elapsed.as_secs_f64()
                )
            }
            Outcome::Ran { key, .. } => {
                tracing::info!(
                    "stage `{stage}` done (miss, key {}…) in {:.2}s",
                    key.short(),
                    elapsed.as_secs_f64()
                )
            }
            Outcome::Failed { error } => tracing::error!("stage `{stage}` failed: {error}"),
            Outcome::Skipped { because } => tracing::warn!("stage `{stage}` skipped: {because}"),
            Outcome::Cancelled => {
                tracing::warn!("stage `{stage}` interrupted; its partial work is kept for a resume")
            }
        },
    }
}

/// First Ctrl-C/SIGTERM sets `cancel` (stages stop at their next step boundary); a second one
/// exits at once with 130.
fn install_signal_handlers(cancel: &Arc<AtomicBool>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 130, cancel.clone())
            .and_then(|_| signal_hook::flag::register(sig, cancel.clone()));
        if let Err(e) = registered {
            tracing::warn!(
                "cannot install the Ctrl-C handler ({e}); Ctrl-C will stop vaepipe abruptly"
            );
        }
    }
}

/// `name=value` for each top-level scalar of a `metrics.json`, or "" when there is none.
fn metrics_summary(path: &std::path::Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text)
    else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (k, v) in &map {
        match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => parts.push(format!("{k}={}", format_float(f))),
                _ => parts.push(format!("{k}={n}")),
            },
            serde_json::Value::Bool(b) => parts.push(format!("{k}={b}")),
            serde_json::Value::String(s) if s.len() <= 40 => parts.push(format!("{k}={s}")),
            _ => {}
        }
    }
    parts.join(" ")
}

fn format_float(f: f64) -> String {
    if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e6) {
        format!("{f:.3e}")
    } else {
        format!("{:.4}", f)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}
