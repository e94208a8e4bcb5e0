//! The training loop both `train-vae` and `train-facenet` run: one place for what makes a run
//! resumable and observable, so the two stages differ only in what a step computes.
//!
//! Per step the driver waits for the batch (timed: the data-starvation share), seeds torch
//! from (seed, step) — so a resumed run draws what an uninterrupted one would have — lets the
//! task compute the step, appends a `metrics.jsonl` line, moves the progress bar, and every
//! `save_every` steps (and at the end) flushes the metrics and asks the task to save. A Ctrl-C
//! saves the last finished step and stops with an error saying how to resume.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use vaepipe_engine::stage::StageCx;
use vaepipe_facedata::FaceBatch;

use crate::stages::common::{self, TrainingBatches};

/// What one step reports to the driver.
pub struct StepRecord {
    /// Fields of this step's `metrics.jsonl` line (the driver adds step and timings).
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// The progress bar's message.
    pub message: String,
}

/// What differs between the trainers.
pub trait TrainingTask {
    /// Computes step `step` on `batch`; torch is already seeded for this step. `save` says
    /// the driver will call [`TrainingTask::save`] right after (a step may keep what a save
    /// needs, such as the reconstructions). A non-finite loss is an error naming the step.
    fn step(&mut self, step: u64, batch: &FaceBatch, save: bool) -> Result<StepRecord>;

    /// Writes a resumable checkpoint of `step` (0: nothing to save yet).
    fn save(&mut self, step: u64) -> Result<()>;
}

/// Where the loop starts and ends.
pub struct LoopPlan<'a> {
    /// Steps already done (from a checkpoint); the loop runs `start + 1 ..= max_steps`.
    pub start: u64,
    pub max_steps: u64,
    pub save_every: u64,
    pub metrics_path: &'a Path,
}

/// Runs the loop; returns the share of step time spent waiting for data.
pub fn drive(
    cx: &mut StageCx<'_>,
    task: &mut impl TrainingTask,
    batches: &mut TrainingBatches,
    plan: LoopPlan<'_>,
) -> Result<f64> {
    common::truncate_jsonl(plan.metrics_path, plan.start)?;
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.metrics_path)?;
    let progress = common::progress_bar(cx, plan.max_steps, plan.start);
    let (mut waited_total, mut busy_total) = (Duration::ZERO, Duration::ZERO);
    for step in plan.start + 1..=plan.max_steps {
        if cx.cancelled() {
            task.save(step - 1)?;
            bail!(
                "interrupted at step {step}; the checkpoint of step {} resumes it",
                step - 1
            );
        }
        let wait_start = Instant::now();
        let batch = batches.next_batch()?;
        let waited = wait_start.elapsed();
        let busy_start = Instant::now();
        tch::manual_seed(common::step_seed(cx.seed(), step));
        let save = step % plan.save_every == 0 || step == plan.max_steps;
        let mut record = task.step(step, &batch, save)?;
        let busy = busy_start.elapsed();
        waited_total += waited;
        busy_total += busy;
        record.metrics.insert("step".into(), step.into());
        record
            .metrics
            .insert("data_wait_ms".into(), (waited.as_secs_f64() * 1e3).into());
        record
            .metrics
            .insert("step_ms".into(), (busy.as_secs_f64() * 1e3).into());
        writeln!(metrics, "{}", serde_json::Value::Object(record.metrics))?;
        // The message first: a plain progress line (no terminal) prints on the position change.
        progress.set_message(record.message);
        progress.set_position(step);
        if save {
            metrics.flush()?;
            task.save(step)?;
        }
    }
    progress.finish_and_clear();
    let seconds = (waited_total + busy_total).as_secs_f64().max(1e-9);
    let share = waited_total.as_secs_f64() / seconds;
    cx.note("data_wait_share", share);
    tracing::info!(
        "stage `{}`: {} steps, {:.2} steps/s, {:.1}% of step time waiting for data",
        cx.stage_name(),
        plan.max_steps - plan.start,
        (plan.max_steps - plan.start) as f64 / seconds,
        share * 100.0
    );
    Ok(share)
}
