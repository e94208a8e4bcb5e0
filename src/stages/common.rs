//! What several stage kinds share: device and thread set-up, the normalisation and resize
//! options, feeding face batches to tch, and small output helpers (progress, plots, JSONL).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize};
use tch::{Device, Kind, Tensor};
use vaepipe_engine::stage::StageCx;

use crate::formats::logs_h5::LossHistory;
use crate::models::resize::Sampling;

/// Resolves the run's device and applies its thread count. Device and threads are
/// `RunOptions`: never in a key.
pub fn device(cx: &StageCx<'_>) -> Result<Device> {
    if let Some(threads) = cx.options().threads {
        tch::set_num_threads(threads as i32);
    }
    Ok(crate::device::select(
        &cx.options().device,
        crate::device::Available::probe(),
    )?)
}

/// A per-step seed derived from the experiment seed (splitmix64 of seed ⊕ step), so each
/// step's random draws are independent of how the run got there.
pub fn step_seed(seed: u64, step: u64) -> i64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as i64 & i64::MAX
}

/// Per-channel (RGB) normalisation of 0..255 pixels: (x − mean) / std. The default is the
/// constant train_vae.py hard-codes (models.md §1.6 step 5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            mean: vaepipe_facedata::imageops::FACENET_MEAN.map(f64::from),
            std: vaepipe_facedata::imageops::FACENET_STD.map(f64::from),
        }
    }
}

impl Normalization {
    fn channel(values: [f64; 3], like: &Tensor) -> Tensor {
        Tensor::from_slice(&values.map(|v| v as f32))
            .view([1, 3, 1, 1])
            .to_device(like.device())
    }

    /// Normalised NCHW → pixel units.
    pub fn to_pixels(&self, x: &Tensor) -> Tensor {
        x * Self::channel(self.std, x) + Self::channel(self.mean, x)
    }

    /// Pixel units NCHW → normalised.
    pub fn from_pixels(&self, x: &Tensor) -> Tensor {
        (x - Self::channel(self.mean, x)) / Self::channel(self.std, x)
    }

    pub fn mean_f32(&self) -> [f32; 3] {
        self.mean.map(|v| v as f32)
    }

    pub fn std_f32(&self) -> [f32; 3] {
        self.std.map(|v| v as f32)
    }
}

/// How images are resized between the 160 crop and the VAE's size (choices.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resize {
    /// TF1's `resize_images` bilinear: src = dst·in/out (the original).
    #[default]
    #[serde(rename = "tf-legacy")]
    TfLegacy,
    /// Half-pixel centres (PyTorch's `interpolate`, TF2's).
    #[serde(rename = "half-pixel")]
    HalfPixel,
}

impl Resize {
    pub fn sampling(self) -> Sampling {
        match self {
            Resize::TfLegacy => Sampling::TfLegacy,
            Resize::HalfPixel => Sampling::HalfPixel,
        }
    }
}

/// What the perceptual net is fed (choices.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerceptualInput {
    /// The VAE's dataset-normalised tensor, as train_vae.py does.
    #[default]
    Dataset,
    /// Per-image standardisation, as the 2017 facenet models were trained.
    Prewhiten,
    /// (x − 127.5)/128, as the 2018 / facenet-pytorch models were trained.
    Fixed,
}

impl PerceptualInput {
    pub fn prepare(self, normalised: &Tensor, norm: &Normalization) -> Tensor {
        match self {
            PerceptualInput::Dataset => normalised.shallow_clone(),
            PerceptualInput::Fixed => (norm.to_pixels(normalised) - 127.5) / 128.0,
            PerceptualInput::Prewhiten => {
                let x = norm.to_pixels(normalised);
                let n = x.size()[1..].iter().product::<i64>() as f64;
                let mean = x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
                let std = x
                    .std_dim(&[1i64, 2, 3][..], false, true)
                    .clamp_min(1.0 / n.sqrt());
                (x - mean) / std
            }
        }
    }
}

/// Accepts `["a", "b"]` or the original's `"a,b, c"` (spaces stripped, as train_vae.py:126).
pub fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v.into_iter().map(|s| s.trim().to_owned()).collect(),
        Either::Text(s) => s
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect(),
    })
}

/// NCHW float tensor → NHWC `Vec<f32>` on the CPU (for PNG grids).
pub fn to_nhwc_vec(x: &Tensor) -> Result<Vec<f32>> {
    let nhwc = x
        .permute([0, 2, 3, 1])
        .contiguous()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float);
    Ok(Vec::<f32>::try_from(&nhwc.flatten(0, -1))?)
}

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

/// The images a stage reads: absolute paths in sorted order, minus what an upstream
/// align-check excluded. `relative` keeps each path relative to the dataset root, the form
/// `excluded.txt` uses.
pub struct ImageList {
    pub root: std::path::PathBuf,
    pub relative: Vec<String>,
}

impl ImageList {
    /// A folder of identity folders (CASIA layout), a CelebA root, or a flat folder of images.
    pub fn open(dir: &Path, check: Option<&Path>) -> Result<Self> {
        let relative: Vec<String> = if dir.join(vaepipe_facedata::celeba::ATTR_FILE).is_file() {
            let celeba = vaepipe_facedata::CelebA::open(dir)?;
            celeba
                .rows
                .iter()
                .map(|r| format!("{}/{}", vaepipe_facedata::celeba::IMAGE_DIR, r.image_file))
                .collect()
        } else if has_subdirectories(dir)? {
            let folders = vaepipe_facedata::IdentityFolders::open(dir)?;
            folders
                .identities
                .iter()
                .flat_map(|id| id.images.iter().map(move |f| format!("{}/{f}", id.name)))
                .collect()
        } else {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .with_context(|| format!("failed to read dataset {}", dir.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| vaepipe_facedata::has_image_extension(&e.path()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let mut list = ImageList {
            root: dir.to_path_buf(),
            relative,
        };
        if let Some(check) = check {
            list.exclude(check)?;
        }
        if list.relative.is_empty() {
            anyhow::bail!("dataset {} has no usable images", dir.display());
        }
        Ok(list)
    }

    fn exclude(&mut self, check: &Path) -> Result<()> {
        let excluded = vaepipe_facedata::align_check::read_excluded(&check.join("excluded.txt"))
            .with_context(|| format!("{} is not an align-check artifact", check.display()))?;
        if !excluded.is_empty() {
            tracing::info!(
                "skipping {} images that align-check excluded",
                excluded.len()
            );
        }
        self.relative.retain(|r| !excluded.contains(r));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.relative.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relative.is_empty()
    }

    pub fn paths(&self) -> Vec<std::path::PathBuf> {
        self.relative.iter().map(|r| self.root.join(r)).collect()
    }

    fn batch_config(&self, config: &LoaderConfig, training: bool) -> vaepipe_facedata::BatchConfig {
        vaepipe_facedata::BatchConfig {
            crop: config.crop,
            mean: config.normalization.mean_f32(),
            std: config.normalization.std_f32(),
            // The resize to the VAE's size happens on the device, in the same op the
            // perceptual path uses (models::resize), so it is one implementation.
            resize: None,
            batch_size: config.batch_size,
            drop_last: training,
            shuffle: training.then_some(config.seed),
            repeat: training,
            prefetch: 4,
            threads: 0,
        }
    }

    /// Endless shuffled epochs, starting after `steps_done` batches, so a resumed run sees the
    /// batches an uninterrupted one would have.
    pub fn training_batches(
        &self,
        config: &LoaderConfig,
        steps_done: u64,
    ) -> Result<TrainingBatches> {
        let batch_config = self.batch_config(config, true);
        let per_epoch = self.len() / config.batch_size.max(1);
        let start = vaepipe_facedata::Position::after_steps(steps_done, per_epoch);
        let loader = vaepipe_facedata::BatchLoader::new(self.paths(), batch_config, start)?;
        Ok(TrainingBatches { loader })
    }

    /// One pass in sorted order, last batch possibly smaller.
    pub fn single_pass(&self, config: &LoaderConfig) -> Result<vaepipe_facedata::BatchLoader> {
        Ok(vaepipe_facedata::BatchLoader::new(
            self.paths(),
            self.batch_config(config, false),
            Default::default(),
        )?)
    }
}

fn has_subdirectories(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("failed to read dataset {}", dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.path().is_dir()))
}

/// How face batches are made for a stage.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    pub crop: usize,
    pub normalization: Normalization,
    pub batch_size: usize,
    pub seed: u64,
}

pub struct TrainingBatches {
    loader: vaepipe_facedata::BatchLoader,
}

impl TrainingBatches {
    pub fn next_batch(&mut self) -> Result<vaepipe_facedata::FaceBatch> {
        match self.loader.next_batch() {
            Some(batch) => Ok(batch?),
            None => anyhow::bail!("the batch pipeline stopped unexpectedly"),
        }
    }
}

/// A CelebA-layout set: its images (sorted, minus exclusions) and their labels.
pub struct FaceSet {
    pub images: ImageList,
    pub file_names: Vec<String>,
    pub fields: Vec<String>,
    /// [N × 40], ±1.0
    pub attributes: Vec<f64>,
    /// 0/1/2 per row; 0 for every row when the set has no partition file.
    pub partition: Vec<u8>,
}

impl FaceSet {
    pub fn celeba(dir: &Path, check: Option<&Path>) -> Result<Self> {
        let celeba = vaepipe_facedata::CelebA::open(dir)?;
        let excluded = match check {
            Some(c) => vaepipe_facedata::align_check::read_excluded(&c.join("excluded.txt"))?,
            None => Default::default(),
        };
        let prefix = vaepipe_facedata::celeba::IMAGE_DIR;
        let rows: Vec<_> = celeba
            .rows
            .iter()
            .filter(|r| !excluded.contains(&format!("{prefix}/{}", r.image_file)))
            .collect();
        if rows.is_empty() {
            anyhow::bail!("CelebA set {} has no usable images", dir.display());
        }
        Ok(FaceSet {
            images: ImageList {
                root: dir.to_path_buf(),
                relative: rows
                    .iter()
                    .map(|r| format!("{prefix}/{}", r.image_file))
                    .collect(),
            },
            file_names: rows.iter().map(|r| r.file_name.clone()).collect(),
            fields: celeba.fields.clone(),
            attributes: rows
                .iter()
                .flat_map(|r| r.attributes.iter().map(|&v| v as f64))
                .collect(),
            partition: rows.iter().map(|r| r.partition.unwrap_or(0)).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.file_names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file_names.is_empty()
    }
}

/// A face batch as an NCHW float tensor on `device`.
pub fn batch_tensor(batch: &vaepipe_facedata::FaceBatch, device: Device) -> Tensor {
    Tensor::from_slice(&batch.data)
        .view([
            batch.n as i64,
            batch.c as i64,
            batch.h as i64,
            batch.w as i64,
        ])
        .to_device(device)
}
