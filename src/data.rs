//! The face images a stage reads and how they reach tch: image lists (sorted, minus what an
//! align-check excluded), CelebA sets with their labels, the batch loaders built over them,
//! and a face batch as an NCHW tensor.

use std::path::Path;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use crate::models::preprocess::Normalization;

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
    /// [N × 40], ±1 (as the attribute file; `latents.h5` stores them as f64)
    pub attributes: Vec<i8>,
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
                .flat_map(|r| r.attributes.iter().copied())
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

/// A face batch as an NCHW float tensor on `device`. To a GPU it goes from pinned host
/// memory with a non-blocking copy, so the host queues the upload and moves on (libtorch's
/// pinned-memory allocator keeps the buffer until the copy is done); on the CPU it is the
/// plain tensor, so CPU results are unchanged.
pub fn upload_batch(batch: &vaepipe_facedata::FaceBatch, device: Device) -> Tensor {
    let host = batch_tensor(batch, Device::Cpu);
    if device.is_cuda() {
        host.pin_memory(device)
            .to_device_(device, Kind::Float, true, false)
    } else {
        host
    }
}
