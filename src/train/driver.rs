//! The training loop both `train-vae` and `train-facenet` run: one place for what makes a run
//! resumable and observable, so the two stages differ only in what a step computes.
//!
//! Per step the driver waits for the batch (timed: the data-starvation share), seeds torch
//! from (seed, step) — so a resumed run draws what an uninterrupted one would have — lets the
//! task compute the step, appends a `metrics.jsonl` line, moves the progress bar, and every
//! `save_every` steps (and at the end) flushes the metrics and asks the task to save. A Ctrl-C
//! saves the last finished step and stops with an error saying how to resume.
//!
//! On a GPU the host must not wait for each step: a task may hand back its steps' records
//! late (it reads losses back from the device every few steps, see
//! [`TrainingTask::flush`]), and the driver fetches the next batch right after a step is
//! queued and offers it to [`TrainingTask::prefetch`], so its upload overlaps the step. The
//! batch order is unchanged, so the CPU results are the same bits either way.
//!
//! Beside `metrics.jsonl` it keeps a TensorBoard event file: each numeric metric as a scalar every
//! step, the task's saved images at each save, cut back to the checkpoint's step on a resume.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use vaepipe_engine::stage::StageCx;
use vaepipe_facedata::FaceBatch;

use crate::data::TrainingBatches;
use crate::formats::tensorboard::EventWriter;
use crate::train::metrics::{progress_bar, truncate_jsonl};
use crate::train::seed::step_seed;

/// What one step reports to the driver.
pub struct StepRecord {
    /// The step this record is of (records may arrive some steps late).
    pub step: u64,
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
    /// Returns the records of the steps whose values are known by now, oldest first: this
    /// step's, or none when it keeps them on the device for a later read-back.
    fn step(&mut self, step: u64, batch: &FaceBatch, save: bool) -> Result<Vec<StepRecord>>;

    /// The records still held back; the driver calls it before every save and at the end.
    fn flush(&mut self) -> Result<Vec<StepRecord>> {
        Ok(Vec::new())
    }

    /// The batch of the next step, offered while this one runs (to start its upload).
    fn prefetch(&mut self, _next: &FaceBatch) -> Result<()> {
        Ok(())
    }

    /// Writes a resumable checkpoint of `step` (0: nothing to save yet).
    fn save(&mut self, step: u64) -> Result<()>;

    /// The PNGs the save of `step` wrote, as (TensorBoard tag, path).
    fn saved_images(&self, _step: u64) -> Vec<(String, PathBuf)> {
        Vec::new()
    }
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
    truncate_jsonl(plan.metrics_path, plan.start)?;
    let log_dir = plan.metrics_path.parent().unwrap_or(Path::new("."));
    let mut events = EventWriter::resume(log_dir, plan.start)?;
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.metrics_path)?;
    let progress = progress_bar(cx, plan.max_steps, plan.start);
    let (mut waited_total, mut busy_total) = (Duration::ZERO, Duration::ZERO);
    // Timings of steps whose records have not come back yet.
    let mut timings: BTreeMap<u64, (Duration, Duration)> = BTreeMap::new();
    let write_records = |records: Vec<StepRecord>,
                         timings: &mut BTreeMap<u64, (Duration, Duration)>,
                         metrics: &mut std::fs::File,
                         events: &mut EventWriter|
     -> Result<()> {
        for mut record in records {
            let (waited, busy) = timings.remove(&record.step).unwrap_or_default();
            record.metrics.insert("step".into(), record.step.into());
            record
                .metrics
                .insert("data_wait_ms".into(), (waited.as_secs_f64() * 1e3).into());
            record
                .metrics
                .insert("step_ms".into(), (busy.as_secs_f64() * 1e3).into());
            for (name, value) in &record.metrics {
                if let Some(v) = value.as_f64().filter(|_| name != "step") {
                    let tag = if name.ends_with("_ms") {
                        format!("time/{name}")
                    } else {
                        name.clone()
                    };
                    events.scalar(&tag, record.step, v as f32)?;
                }
            }
            writeln!(metrics, "{}", serde_json::Value::Object(record.metrics))?;
            progress.set_message(record.message);
        }
        Ok(())
    };
    let mut ahead = None;
    for step in plan.start + 1..=plan.max_steps {
        if cx.cancelled() {
            write_records(task.flush()?, &mut timings, &mut metrics, &mut events)?;
            task.save(step - 1)?;
            bail!(
                "interrupted at step {step}; the checkpoint of step {} resumes it",
                step - 1
            );
        }
        let (batch, waited) = match ahead.take() {
            Some(fetched) => fetched,
            None => fetch(batches)?,
        };
        let busy_start = Instant::now();
        tch::manual_seed(step_seed(cx.seed(), step));
        let save = step % plan.save_every == 0 || step == plan.max_steps;
        let mut records = task.step(step, &batch, save)?;
        if save {
            records.extend(task.flush()?);
        }
        let busy = busy_start.elapsed();
        waited_total += waited;
        busy_total += busy;
        timings.insert(step, (waited, busy));
        write_records(records, &mut timings, &mut metrics, &mut events)?;
        progress.set_position(step);
        if save {
            metrics.flush()?;
            task.save(step)?;
            for (tag, path) in task.saved_images(step) {
                events.png_file(&tag, step, &path)?;
            }
            events.flush()?;
            cx.saved(log_dir);
        }
        if step < plan.max_steps {
            // Fetched now, while the GPU works on this step; the wait counts for the next.
            let (next, waited) = fetch(batches)?;
            task.prefetch(&next)?;
            ahead = Some((next, waited));
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

/// The next batch and how long the loop waited for it.
fn fetch(batches: &mut TrainingBatches) -> Result<(FaceBatch, Duration)> {
    let start = Instant::now();
    let batch = batches.next_batch()?;
    Ok((batch, start.elapsed()))
}
