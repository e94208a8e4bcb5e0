//! `vae.json` beside `vae.safetensors`: what `encode`, `render-attribute` and `modify` read to
//! rebuild a VAE that `train-vae` (or `import-weights`) wrote.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Device;

use crate::models::preprocess::{Normalization, Resize};
use crate::models::{self, VaeArch};

/// What `encode`, `render-attribute` and `modify` need to rebuild the trained VAE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaeSpec {
    pub model: VaeArch,
    pub latent_size: usize,
    pub input_image_size: usize,
    pub resize: Resize,
    pub normalization: Normalization,
}

impl VaeSpec {
    pub const WEIGHTS: &'static str = "vae.safetensors";
    pub const SPEC: &'static str = "vae.json";

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::SPEC);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "failed to read {} (is it a train-vae artifact?)",
                path.display()
            )
        })?;
        let spec: Self = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a vae.json", path.display()))?;
        // The file may come from elsewhere (import-weights, a colleague): its sizes become
        // allocations, so they are held to the params' limits.
        for (field, value, max) in [
            ("latent_size", spec.latent_size, crate::limits::VECTOR_WIDTH),
            (
                "input_image_size",
                spec.input_image_size,
                crate::limits::IMAGE_SIDE,
            ),
        ] {
            if value as u64 > max {
                anyhow::bail!(
                    "{}: `{field}` = {value} is more than the {max} vaepipe accepts",
                    path.display()
                );
            }
        }
        Ok(spec)
    }

    /// Builds the VAE on `device` and loads the trained weights from `dir`.
    pub fn load(dir: &Path, device: Device) -> Result<(Self, VarStore, models::Vae)> {
        let spec = Self::read(dir)?;
        let mut vs = VarStore::new(device);
        let vae = models::Vae::new(&vs.root(), spec.model, spec.latent_size as i64)?;
        models::weights::load_safetensors(&mut vs, &dir.join(Self::WEIGHTS))?;
        Ok((spec, vs, vae))
    }
}
