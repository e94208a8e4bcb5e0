//! What a training run shows and writes as it goes: the progress bar, the `metrics.jsonl`
//! rewrite on resume, and the loss-curve PNG.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use vaepipe_engine::stage::StageCx;

use crate::formats::logs_h5::LossHistory;

/// The stage's progress: a bar on a terminal, plain lines at a steady pace otherwise
/// (`vaepipe_engine::progress`).
pub fn progress_bar(
    cx: &StageCx<'_>,
    len: u64,
    position: u64,
) -> vaepipe_engine::progress::Progress {
    cx.progress(len, position)
}

/// Keeps the lines of a `metrics.jsonl` whose `step` is at most `last_step` (a resumed run
/// rewrites what came after its checkpoint).
pub fn truncate_jsonl(path: &Path, last_step: u64) -> Result<()> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut kept = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let step = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["step"].as_u64());
        if step.is_some_and(|s| s <= last_step) {
            kept.push(line);
        }
    }
    let mut out = std::fs::File::create(path)
        .with_context(|| format!("failed to rewrite {}", path.display()))?;
    for line in kept {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A loss-curve PNG: total, reconstruction and KL per step, each on its own panel.
pub fn plot_losses(history: &LossHistory, path: &Path) -> Result<()> {
    crate::formats::plot::loss_curves(
        &[
            ("total", &history.total_loss),
            ("reconstruction", &history.reconstruction_loss),
            ("KL", &history.kl_loss),
        ],
        path,
    )
}
