//! Resumable training checkpoints in the stage's partial directory.
//!
//! A checkpoint is a directory `step-NNNNNN/` holding `model.safetensors` (every VAE variable,
//! moving statistics included), `optimizer.safetensors` (Adam's moments), and `state.json`
//! (step and the stage's history: train-vae's `LossHistory` by default, any serialisable
//! record for other trainers such as `train-facenet`). The data order and the sampling noise are functions of
//! (seed, step), so the step *is* the RNG and data-order state. A checkpoint is written into a
//! temporary directory and renamed into place, so a kill mid-save leaves the previous ones
//! intact and never a half checkpoint that looks whole. The newest `KEEP` are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use crate::formats::logs_h5::LossHistory;
use crate::train::adam::TfAdam;

/// How many checkpoints survive (the original's `max_to_keep=3`).
pub const KEEP: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState<H = LossHistory> {
    pub step: u64,
    pub history: H,
}

pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(dir: PathBuf) -> Self {
        Checkpoints { dir }
    }

    fn step_dir(&self, step: u64) -> PathBuf {
        self.dir.join(format!("step-{step:06}"))
    }

    /// Complete checkpoints, oldest first.
    pub fn list(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("step-")?.parse().ok()?;
                e.path()
                    .join("state.json")
                    .is_file()
                    .then(|| (step, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    pub fn latest(&self) -> Option<(u64, PathBuf)> {
        self.list().pop()
    }

    pub fn save<H: Serialize>(
        &self,
        vs: &VarStore,
        adam: &TfAdam,
        state: &TrainState<H>,
    ) -> Result<PathBuf> {
        self.save_dropping(vs, adam, state, |_| false)
    }

    /// [`Checkpoints::save`], then removes the older checkpoints whose step `drop` picks
    /// (before keeping the newest [`KEEP`], so they never push out one that should stay).
    pub fn save_dropping<H: Serialize>(
        &self,
        vs: &VarStore,
        adam: &TfAdam,
        state: &TrainState<H>,
        drop: impl Fn(u64) -> bool,
    ) -> Result<PathBuf> {
        let final_dir = self.step_dir(state.step);
        let tmp = self.dir.join(format!(".tmp-step-{:06}", state.step));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("failed to create {}", tmp.display()))?;
        vs.save(tmp.join("model.safetensors"))
            .context("failed to save model weights")?;
        let (_, moments) = adam.state();
        Tensor::write_safetensors(&moments, tmp.join("optimizer.safetensors"))
            .context("failed to save optimizer state")?;
        let json = serde_json::to_vec(state)?;
        std::fs::write(tmp.join("state.json"), json)?;
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::rename(&tmp, &final_dir)
            .with_context(|| format!("failed to commit checkpoint {}", final_dir.display()))?;
        for (step, old) in self.list() {
            if step != state.step && drop(step) {
                std::fs::remove_dir_all(&old)?;
            }
        }
        for (_, old) in self.list().iter().rev().skip(KEEP) {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(final_dir)
    }

    /// Loads a checkpoint into the model and optimizer; returns its state.
    pub fn load<H: DeserializeOwned>(
        dir: &Path,
        vs: &mut VarStore,
        adam: &mut TfAdam,
    ) -> Result<TrainState<H>> {
        let mut load = || -> Result<TrainState<H>> {
            let state: TrainState<H> =
                serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)?;
            vs.load(dir.join("model.safetensors"))?;
            let moments: BTreeMap<String, Tensor> =
                Tensor::read_safetensors(dir.join("optimizer.safetensors"))?
                    .into_iter()
                    .collect();
            adam.restore(state.step as i64, &moments)?;
            Ok(state)
        };
        load().with_context(|| format!("failed to resume from checkpoint {}", dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::adam::AdamConfig;

    fn steps(c: &Checkpoints) -> Vec<u64> {
        c.list().into_iter().map(|(s, _)| s).collect()
    }

    /// A warm start from an off-schedule step 5 (every 2) must end with the checkpoints of an
    /// uninterrupted run: 5 goes at the next save, before the newest `KEEP` are chosen.
    #[test]
    fn dropped_checkpoints_never_push_out_one_that_should_stay() {
        let dir = tempfile::tempdir().unwrap();
        let vs = VarStore::new(tch::Device::Cpu);
        let _w = vs.root().zeros("w", &[2]);
        let adam = TfAdam::new(&vs, AdamConfig::default());
        let c = Checkpoints::new(dir.path().join("c"));
        for step in [2, 4, 5] {
            c.save(&vs, &adam, &TrainState { step, history: () })
                .unwrap();
        }
        assert_eq!(steps(&c), [2, 4, 5]);
        let off_schedule = |s: u64| s < 6 && !s.is_multiple_of(2);
        c.save_dropping(
            &vs,
            &adam,
            &TrainState {
                step: 6,
                history: (),
            },
            off_schedule,
        )
        .unwrap();
        assert_eq!(steps(&c), [2, 4, 6], "what 2, 4, 6 from scratch keep");
        c.save(
            &vs,
            &adam,
            &TrainState {
                step: 8,
                history: (),
            },
        )
        .unwrap();
        assert_eq!(steps(&c), [4, 6, 8]);
    }
}
