//! What the engine's run verbs show and leave behind, in one place: the line per stage event
//! ([`render_event`], [`render_slurm_event`]), the end-of-run summary with each artifact's
//! metrics and the report files ([`finish`]: `report.html`, and for a sweep
//! `sweep.json`/`.csv`/`.md`, the binary's sweep images and one report per variant), and what
//! Ctrl-C/SIGTERM do ([`install_signal_handlers`]). `run`, `run --executor slurm --wait` and the
//! Slurm jobs' `run-stage` share them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use super::{CliError, Hooks};
use crate::cache::CacheStore;
use crate::executor::slurm::SlurmEvent;
use crate::scheduler::{self, Event, Outcome};

/// Prints each stage's link and metrics and the summary line, writes the reports, and turns the
/// outcomes into the verb's result (shared with `run --executor slurm --wait`).
pub(super) fn finish(
    started: Instant,
    sweep: &crate::config::Sweep,
    sweep_plan: &scheduler::SweepPlan,
    report: &scheduler::RunReport,
    store: &CacheStore,
    runs_dir: &std::path::Path,
    hooks: &Hooks,
) -> Result<(), CliError> {
    let exp = &sweep.base;
    let plan = &sweep_plan.plan;
    let (mut ran, mut hit, mut bad, mut from_remote) = (0, 0, 0, 0);
    for ((name, outcome), ps) in report.results.iter().zip(&plan.stages) {
        match outcome {
            Outcome::Ran { .. } => ran += 1,
            Outcome::Hit { remote, .. } => {
                hit += 1;
                from_remote += usize::from(*remote);
            }
            _ => bad += 1,
        }
        if let Some(dir) = outcome.dir() {
            let metrics = metrics_summary(&dir.join("metrics.json"));
            let link = runs_dir.join(ps.links.last().cloned().unwrap_or_default());
            let metrics = if metrics.is_empty() {
                String::new()
            } else {
                format!("  {metrics}")
            };
            println!("{name}: {}{metrics}", link.display());
        }
    }
    let variants = if sweep.is_sweep() {
        format!(" ({} variants)", sweep.variants.len())
    } else {
        String::new()
    };
    let from_remote = if from_remote > 0 {
        format!(" ({from_remote} from the remote)")
    } else {
        String::new()
    };
    println!(
        "{}: {ran} ran, {hit} fresh{from_remote}, {bad} not completed in {:.2}s{variants}",
        exp.name,
        started.elapsed().as_secs_f64()
    );
    let written = write_outputs(sweep, sweep_plan, report, store, runs_dir, hooks);
    if report.cancelled() || crate::signal::caught().is_some() {
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
    written
}

/// `report.html` for the run; for a sweep also `sweep.json`/`.csv`/`.md`, the binary's sweep
/// images (its hook) and a `report.html` per variant. Prints where they are.
fn write_outputs(
    sweep: &crate::config::Sweep,
    plan: &scheduler::SweepPlan,
    report: &scheduler::RunReport,
    store: &CacheStore,
    runs_dir: &std::path::Path,
    hooks: &Hooks,
) -> Result<(), CliError> {
    use crate::report::{self, html};
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        CliError::Failed(format!("cannot write {what}: {e}"))
    };
    let runs_abs = std::path::absolute(runs_dir).unwrap_or_else(|_| runs_dir.to_path_buf());
    let exp_dir = runs_abs.join(&sweep.base.name);
    std::fs::create_dir_all(&exp_dir).map_err(|e| failed("the runs directory", &e))?;
    let shown = runs_dir.join(&sweep.base.name);
    let summary = report::summarize(sweep, plan, Some(report), store, &runs_abs);
    let mut images = Vec::new();
    let mut hook_error = None;
    if sweep.is_sweep() {
        report::write_sweep_files(&summary, &exp_dir).map_err(|e| failed("the sweep table", &e))?;
        println!("sweep table: {}", shown.join(report::SWEEP_CSV).display());
        if let Some(hook) = hooks.sweep_hook() {
            match hook(&summary, &exp_dir) {
                Ok(made) => images = made,
                Err(e) => {
                    tracing::error!("building the sweep's images failed: {e:#}");
                    hook_error = Some(format!("building the sweep's images failed: {e:#}"));
                }
            }
        }
        for (v, variant) in summary.variants.iter().enumerate() {
            let page = html::Page {
                title: format!("{} / {}", sweep.base.name, variant.name),
                subtitle: variant_subtitle(variant),
                nodes: html::nodes(plan, Some(report), store, Some(v)),
                runs_subdir: sweep.variants[v].runs_subdir(),
                ..html::Page::default()
            };
            html::write(&page, &variant.dir.join(report::REPORT_HTML))
                .map_err(|e| failed("a variant's report", &e))?;
        }
    }
    let page = html::Page {
        title: sweep.base.name.clone(),
        subtitle: format!(
            "{} · {}{}",
            sweep.base.file.display(),
            crate::cache::manifest::rfc3339(std::time::SystemTime::now()),
            if sweep.is_sweep() {
                format!(
                    " · {} variants ({})",
                    sweep.variants.len(),
                    sweep.strategy_name()
                )
            } else {
                String::new()
            }
        ),
        nodes: html::nodes(plan, Some(report), store, None),
        sweep: sweep.is_sweep().then_some(&summary),
        images,
        runs_subdir: std::path::PathBuf::from(&sweep.base.name),
        banner: None,
    };
    html::write(&page, &exp_dir.join(report::REPORT_HTML)).map_err(|e| failed("the report", &e))?;
    println!("report: {}", shown.join(report::REPORT_HTML).display());
    match hook_error {
        Some(e) => Err(CliError::Failed(e)),
        None => Ok(()),
    }
}

fn variant_subtitle(v: &crate::report::VariantSummary) -> String {
    v.values
        .iter()
        .map(|(k, x)| format!("{k} = {x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn render_event(event: &Event) {
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
            Outcome::Hit { key, remote, .. } => {
                tracing::info!(
                    "stage `{stage}` fresh (hit, {}key {}…) in {:.2}s",
                    if *remote { "remote, " } else { "" },
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
        Event::WarmStart { stage, from, .. } => {
            tracing::info!("stage `{stage}`: {}", from.present())
        }
        Event::Saved { stage, .. } => tracing::debug!("stage `{stage}` saved"),
    }
}

/// What the Slurm executor reports: submissions on stdout (they are the verb's result), state
/// changes while waiting in the log.
pub(super) fn render_slurm_event(event: &SlurmEvent) {
    match event {
        SlurmEvent::AlreadyQueued { stage, job, key } => {
            println!("{stage}: already queued as job {job} (key {key}…)")
        }
        SlurmEvent::Submitted {
            stage,
            job,
            after,
            key,
        } => {
            let deps = if after.is_empty() {
                String::new()
            } else {
                format!(" after {}", after.join(", "))
            };
            println!("{stage}: submitted job {job}{deps} (key {key}…)");
        }
        SlurmEvent::Changed { stage, job, state } => {
            let (word, detail) = state.describe();
            tracing::info!(
                "stage `{stage}` {word} (job {job}){}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" {detail}")
                }
            );
        }
    }
}

/// First Ctrl-C/SIGTERM sets `cancel`; a second one exits at once (see `signal.rs`).
pub(super) fn install_signal_handlers(cancel: &Arc<AtomicBool>) {
    crate::signal::install_for(cancel);
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
