//! Stage `encode`: the encoding half of calculate_attribute_vectors.py — every image of a
//! CelebA-layout set, in sorted file-name order, through the trained encoder, streamed in
//! batches so memory never holds the decoded set. Stores the sampled latents (as the
//! original), the means, the labels and the partition in `latents.h5`.
//!
//! Encoder BN follows the original by default (training mode: batch statistics, so a latent
//! depends on its batch-mates); `encode_bn = "running"` uses the moving averages instead.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};
use vaepipe_engine::stage::{ParamIssue, Role, Stage, StageCx};

use crate::data::{FaceSet, LoaderConfig};
use crate::formats::latents_h5::{LatentRows, LatentSet};
use crate::formats::vae_spec::VaeSpec;
use crate::models;
use crate::precision::Precision;
use crate::train::metrics::progress_bar;
use crate::train::seed::step_seed;

pub struct Encode;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodeBn {
    /// Batch statistics (the original: `is_training=True`).
    #[default]
    Batch,
    /// The moving averages learnt in training.
    Running,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeParams {
    /// Images per forward pass; with `encode_bn = "batch"` it also sets whose statistics a
    /// latent shares (the original used 128).
    pub batch_size: usize,
    pub encode_bn: EncodeBn,
    /// `fp32` (default), `tf32` or `bf16` autocast (src/precision); out of the key when `fp32`.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl Default for EncodeParams {
    fn default() -> Self {
        EncodeParams {
            batch_size: 128,
            encode_bn: EncodeBn::Batch,
            precision: Precision::Fp32,
        }
    }
}

impl Stage for Encode {
    const KIND: &'static str = "encode";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "encodes every image of a CelebA-layout set with a trained VAE";
    type Params = EncodeParams;

    fn roles() -> &'static [Role] {
        &[
            Role {
                name: "model",
                required: true,
                doc: "a `train-vae` stage",
            },
            Role {
                name: "data",
                required: true,
                doc: "a CelebA-layout folder (img_align_celeba/, list_attr_celeba.txt)",
            },
            Role {
                name: "check",
                required: false,
                doc: "an align-check stage whose excluded files are skipped",
            },
        ]
    }

    fn validate(p: &Self::Params) -> Vec<ParamIssue> {
        if let Some(issue) = crate::stages::params::at_most(
            "batch_size",
            p.batch_size as u64,
            crate::limits::BATCH_SIZE,
            "images a batch",
        ) {
            return vec![issue];
        }
        if p.batch_size == 0 {
            return vec![ParamIssue {
                path: "batch_size".into(),
                message: "`batch_size` must be at least 1".into(),
                help: None,
            }];
        }
        Vec::new()
    }

    fn uses_accelerator(_: &Self::Params) -> bool {
        true
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        let device = crate::device::for_stage(cx)?;
        p.precision.apply()?;
        cx.note("precision", p.precision.name());
        let (spec, _vs, vae) = VaeSpec::load(cx.require_input("model")?, device)?;
        let set = FaceSet::celeba(cx.require_input("data")?, cx.input("check"))?;
        let train_bn = p.encode_bn == EncodeBn::Batch;
        let l = spec.latent_size;
        let n = set.len();
        let cells = crate::limits::product(&[n, l], "latents")?;
        // f32, as the encoder produced them: the file's f64 comes from HDF5's exact
        // conversion at the write, so the matrices cost half.
        let mut latent_vars = crate::limits::filled(cells, 0f32, "latent variances")?;
        let mut latent_means = crate::limits::filled(cells, 0f32, "latent means")?;
        let size = spec.model.image_size();
        let progress = progress_bar(cx, n as u64, 0);
        let config = LoaderConfig {
            crop: spec.input_image_size,
            normalization: spec.normalization,
            batch_size: p.batch_size,
            seed: cx.seed(),
        };
        for (b, batch) in set.images.single_pass(&config)?.enumerate() {
            cx.check_cancelled()?;
            let batch = batch?;
            let indices = batch.indices.clone();
            let x = models::resize::resize(
                &crate::data::upload_batch(&batch, device),
                size,
                size,
                spec.resize.sampling(),
            );
            tch::manual_seed(step_seed(cx.seed(), b as u64));
            let (mean, z) = tch::no_grad(|| {
                let (mean, log_var) = p.precision.autocast(device, || vae.encode(&x, train_bn));
                let (mean, log_var) = (mean.to_kind(Kind::Float), log_var.to_kind(Kind::Float));
                let z = models::reparameterize(&mean, &log_var);
                (mean, z)
            });
            for (dst, t) in [(&mut latent_means, &mean), (&mut latent_vars, &z)] {
                let rows: Vec<f32> =
                    Vec::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
                for (k, &i) in indices.iter().enumerate() {
                    dst[i * l..(i + 1) * l].copy_from_slice(&rows[k * l..(k + 1) * l]);
                }
            }
            progress.inc(indices.len() as u64);
        }
        progress.finish_and_clear();
        cx.note("device", crate::device::name(device));
        cx.note("images", n as u64);
        LatentRows {
            latent_size: l,
            file_names: &set.file_names,
            fields: &set.fields,
            attributes: &set.attributes,
            partition: &set.partition,
            latent_vars: &latent_vars,
            latent_means: &latent_means,
        }
        .write(&cx.out_dir().join(LatentSet::FILE))
    }
}
