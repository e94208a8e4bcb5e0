//! `face_net.json` beside `face_net.safetensors`: what a consumer of a `train-facenet` net
//! must know to feed it (end point, input preparation, crop size).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::models::preprocess::{Normalization, PerceptualInput};

/// `face_net.json`: what a consumer of `face_net.safetensors` must know to feed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceNetSpec {
    /// The deepest end point in the weights file.
    pub end_point: String,
    /// What the net was fed in training; `train-vae`'s `perceptual_input` should match.
    pub perceptual_input: PerceptualInput,
    /// The crop normalisation in training; for `dataset` input, `train-vae`'s should match.
    pub normalization: Normalization,
    pub input_image_size: usize,
    /// Classes (identity folders) it was trained to tell apart.
    pub identities: usize,
}

impl FaceNetSpec {
    pub const WEIGHTS: &'static str = "face_net.safetensors";
    pub const SPEC: &'static str = "face_net.json";

    /// The spec beside a weights file, when there is one (a `train-facenet` artifact).
    pub fn beside(weights: &Path) -> Result<Option<Self>> {
        let Some(path) = weights.parent().map(|d| d.join(Self::SPEC)) else {
            return Ok(None);
        };
        if !path.is_file() {
            return Ok(None);
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
        let spec = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a face_net.json", path.display()))?;
        Ok(Some(spec))
    }
}
