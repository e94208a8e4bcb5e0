//! The batch pipeline `train-vae` and `encode` consume: decode → `crop_or_pad` → float →
//! per-channel normalisation → (optional bilinear resize) → NCHW [`FaceBatch`]es.
//!
//! A background producer thread walks the batch schedule and decodes each batch's images on its own
//! rayon pool, then hands the batch over a bounded crossbeam channel; so the model works while the
//! next batches decode, and memory is bounded by `prefetch` batches, never by the dataset size.
//! The schedule is a pure function of (dataset length, config, epoch): each epoch's shuffle is a
//! ChaCha8 permutation seeded from (seed, epoch), so a run resumed at a [`Position`] sees exactly
//! the batches an uninterrupted run would have seen. Decode errors (and decoder panics) become
//! `Err` items naming the file; the loader itself never panics on a file.
//! Turning a [`FaceBatch`] into a tensor is the caller's business (this crate knows no torch).
//!
//! Endless (training) epochs over a set whose crops fit in [`CROP_MEMO_BUDGET`] decode each
//! file once and keep its `crop_or_pad` bytes: the demo's 1,000 images are decoded 51 times in
//! 1,600 steps otherwise, on the cores the model trains on. The batches are the same bytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::imageops::{self, Layout, Sampling, FACENET_MEAN, FACENET_STD};

/// How batches are made. `Default` is `train_vae.py`'s: 160 crop, facenet constants, batch 128,
/// full batches only, shuffled with seed 666, endless epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Side of the square `crop_or_pad` window (TF semantics).
    pub crop: usize,
    /// Per-channel (RGB) mean subtracted after the crop.
    pub mean: [f32; 3],
    /// Per-channel (RGB) std divided by after subtracting the mean.
    pub std: [f32; 3],
    /// Optional resize of the normalised crop to `size`×`size` (e.g. 64 for the VAE input).
    pub resize: Option<Resize>,
    /// Images per batch.
    pub batch_size: usize,
    /// Drop a final batch smaller than `batch_size` (training: true, encoding: false).
    pub drop_last: bool,
    /// Shuffle seed; each epoch is permuted by ChaCha8 seeded from (seed, epoch). None keeps
    /// sorted file order.
    pub shuffle: Option<u64>,
    /// Endless epochs (training) or a single pass (encoding).
    pub repeat: bool,
    /// Batches decoded ahead of the consumer (the channel capacity); at least 1.
    pub prefetch: usize,
    /// Decode threads; 0 uses all cores. Not part of any result.
    pub threads: usize,
}

/// Bilinear resize applied to the normalised crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    pub size: usize,
    pub sampling: Sampling,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            crop: 160,
            mean: FACENET_MEAN,
            std: FACENET_STD,
            resize: None,
            batch_size: 128,
            drop_last: true,
            shuffle: Some(666),
            repeat: true,
            prefetch: 4,
            threads: 0,
        }
    }
}

impl BatchConfig {
    /// Side of the images in a batch: the resize size, or the crop.
    pub fn out_size(&self) -> usize {
        self.resize.map(|r| r.size).unwrap_or(self.crop)
    }
}

/// Where in the schedule to start: batch `batch` (0-based) of epoch `epoch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub batch: usize,
}

impl Position {
    /// The position after `steps` batches have been consumed.
    pub fn after_steps(steps: u64, batches_per_epoch: usize) -> Position {
        let b = batches_per_epoch.max(1) as u64;
        Position {
            epoch: steps / b,
            batch: (steps % b) as usize,
        }
    }
}

/// One batch: `n` images, NCHW, normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceBatch {
    /// `n * c * h * w` values, NCHW.
    pub data: Vec<f32>,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Index into the loader's path list of each image, in batch order.
    pub indices: Vec<usize>,
    /// Where this batch sits in the schedule.
    pub position: Position,
}

/// The image indices of every batch of `epoch`, in order.
pub fn epoch_schedule(len: usize, config: &BatchConfig, epoch: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    if let Some(seed) = config.shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
    }
    let bs = config.batch_size.max(1);
    order
        .chunks(bs)
        .filter(|c| !config.drop_last || c.len() == bs)
        .map(<[usize]>::to_vec)
        .collect()
}

/// Decodes one image file into normalised CHW floats (`3 * s * s`, s = `config.out_size()`)
/// written into `out`. Any decoder failure or panic becomes an error naming the file.
pub fn decode_into(path: &Path, config: &BatchConfig, out: &mut [f32]) -> Result<()> {
    normalise_crop_into(&decode_crop(path, config)?, config, out);
    Ok(())
}

/// The most bytes of decoded crops an endless loader keeps in memory (the set's crops must
/// all fit, or none are kept): memory stays bounded whatever the dataset's size.
pub const CROP_MEMO_BUDGET: usize = 256 << 20;

/// Decodes `path` and returns its `crop`×`crop` RGB bytes (HWC), as TF's `crop_or_pad`.
fn decode_crop(path: &Path, config: &BatchConfig) -> Result<Vec<u8>> {
    // TF's decode_image(channels=3): grayscale is replicated, alpha dropped; the size is
    // checked against the header before anything is allocated.
    // A file that passed align-check is far below the default limits; one that did not is
    // refused here naming the file, instead of allocating what its header claims.
    let rgb = crate::decode::open_image(path, &crate::decode::DecodeLimits::DEFAULT)?.rgb;
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let crop = config.crop;
    Ok(imageops::crop_or_pad(rgb.as_raw(), h, w, 3, crop, crop))
}

/// Normalises (and optionally resizes) a crop from [`decode_crop`] into `out`.
fn normalise_crop_into(cropped: &[u8], config: &BatchConfig, out: &mut [f32]) {
    let crop = config.crop;
    match config.resize {
        None => imageops::normalise_to_chw(cropped, crop, crop, config.mean, config.std, out),
        Some(r) => {
            let mut chw = vec![0.0f32; 3 * crop * crop];
            imageops::normalise_to_chw(cropped, crop, crop, config.mean, config.std, &mut chw);
            let resized = imageops::resize_bilinear(
                &chw,
                Layout::Chw,
                crop,
                crop,
                3,
                r.size,
                r.size,
                r.sampling,
            );
            out.copy_from_slice(&resized);
        }
    }
}

/// Decoded crops by image index, filled as epochs first reach them.
type CropMemo = Vec<std::sync::OnceLock<Vec<u8>>>;

/// A memo for `len` images when the loader repeats and all their crops fit the budget.
fn crop_memo(len: usize, config: &BatchConfig) -> Option<CropMemo> {
    let bytes = len.saturating_mul(3 * config.crop * config.crop);
    (config.repeat && bytes <= CROP_MEMO_BUDGET)
        .then(|| (0..len).map(|_| Default::default()).collect())
}

/// Prefetching batch iterator over a list of image paths.
pub struct BatchLoader {
    rx: Option<Receiver<Result<FaceBatch>>>,
    stop: Arc<AtomicBool>,
    producer: Option<std::thread::JoinHandle<()>>,
    waited: Duration,
    batches_per_epoch: usize,
}

impl BatchLoader {
    /// Starts the producer at `start`. Errors if the config can never yield a batch.
    pub fn new(paths: Vec<PathBuf>, config: BatchConfig, start: Position) -> Result<BatchLoader> {
        let bad = |name, message: String| Err(Error::Config { name, message });
        if config.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if config.crop == 0 || config.resize.is_some_and(|r| r.size == 0) {
            return bad("crop", "crop and resize sizes must be at least 1".into());
        }
        let batches_per_epoch = epoch_schedule(
            paths.len(),
            &BatchConfig {
                shuffle: None,
                ..config.clone()
            },
            0,
        )
        .len();
        if batches_per_epoch == 0 && config.repeat {
            return bad(
                "batch_size",
                format!(
                    "{} images never fill a batch of {} with drop_last",
                    paths.len(),
                    config.batch_size
                ),
            );
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("facedata-decode-{i}"))
            .build()
            .map_err(|e| Error::Config {
                name: "threads",
                message: e.to_string(),
            })?;
        let (tx, rx) = bounded(config.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let producer = std::thread::Builder::new()
            .name("facedata-batches".into())
            .spawn(move || {
                let memo = crop_memo(paths.len(), &config);
                let mut pos = start;
                loop {
                    let schedule = epoch_schedule(paths.len(), &config, pos.epoch);
                    for (b, indices) in schedule.into_iter().enumerate().skip(pos.batch) {
                        if stop2.load(Ordering::Relaxed) {
                            return;
                        }
                        let position = Position {
                            epoch: pos.epoch,
                            batch: b,
                        };
                        let item = pool.install(|| {
                            make_batch(&paths, memo.as_ref(), &config, indices, position)
                        });
                        if tx.send(item).is_err() {
                            return; // consumer gone
                        }
                    }
                    if !config.repeat {
                        return;
                    }
                    pos = Position {
                        epoch: pos.epoch + 1,
                        batch: 0,
                    };
                }
            })
            .map_err(|e| Error::Config {
                name: "threads",
                message: format!("cannot start the batch producer: {e}"),
            })?;
        Ok(BatchLoader {
            rx: Some(rx),
            stop,
            producer: Some(producer),
            waited: Duration::ZERO,
            batches_per_epoch,
        })
    }

    /// Next batch, blocking until the producer has it; `None` after a single pass ends.
    pub fn next_batch(&mut self) -> Option<Result<FaceBatch>> {
        let rx = self.rx.as_ref()?;
        let t = Instant::now();
        let item = rx.recv().ok();
        self.waited += t.elapsed();
        item
    }

    /// Total time [`BatchLoader::next_batch`] spent waiting for the producer (data starvation).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Batches in one epoch (after `drop_last`).
    pub fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }
}

impl Iterator for BatchLoader {
    type Item = Result<FaceBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks a producer waiting on a full channel.
        self.rx.take();
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
    }
}

fn make_batch(
    paths: &[PathBuf],
    memo: Option<&CropMemo>,
    config: &BatchConfig,
    indices: Vec<usize>,
    position: Position,
) -> Result<FaceBatch> {
    let s = config.out_size();
    let per = 3 * s * s;
    let mut data = vec![0.0f32; indices.len() * per];
    data.par_chunks_mut(per)
        .zip(indices.par_iter())
        .try_for_each(|(out, &i)| -> Result<()> {
            let Some(slot) = memo.map(|m| &m[i]) else {
                return decode_into(&paths[i], config, out);
            };
            let crop = match slot.get() {
                Some(crop) => crop,
                None => {
                    let crop = decode_crop(&paths[i], config)?;
                    slot.get_or_init(|| crop)
                }
            };
            normalise_crop_into(crop, config, out);
            Ok(())
        })?;
    Ok(FaceBatch {
        data,
        n: indices.len(),
        c: 3,
        h: s,
        w: s,
        indices,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` 6×4 PNGs whose pixels encode their index, returns their paths.
    fn images(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let img = image::RgbImage::from_fn(4, 6, |x, y| {
                    image::Rgb([i as u8, (10 * y + x) as u8, 200])
                });
                let p = dir.join(format!("{i:03}.png"));
                img.save(&p).unwrap();
                p
            })
            .collect()
    }

    fn cfg() -> BatchConfig {
        BatchConfig {
            crop: 2,
            mean: [0.0; 3],
            std: [1.0; 3],
            batch_size: 3,
            prefetch: 2,
            threads: 2,
            ..BatchConfig::default()
        }
    }

    #[test]
    fn batches_are_nchw_cropped_and_normalised() {
        let d = tempfile::tempdir().unwrap();
        let paths = images(d.path(), 3);
        let config = BatchConfig {
            shuffle: None,
            repeat: false,
            mean: [1.0, 2.0, 0.0],
            std: [2.0, 1.0, 100.0],
            ..cfg()
        };
        let batches: Vec<FaceBatch> = BatchLoader::new(paths, config, Position::default())
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!((b.n, b.c, b.h, b.w), (3, 3, 2, 2));
        assert_eq!(b.indices, [0, 1, 2]);
        // Image 2, crop of 6x4 to 2x2 takes rows 2..4, cols 1..3: G = 10*y + x.
        let img2 = &b.data[2 * 12..3 * 12];
        assert_eq!(&img2[0..4], &[0.5; 4]); // R = (2 - 1) / 2
        assert_eq!(&img2[4..8], &[19.0, 20.0, 29.0, 30.0]); // G - 2: 21 22 31 32
        assert_eq!(&img2[8..12], &[2.0; 4]);
    }

    #[test]
    fn resize_option_produces_the_requested_size() {
        let d = tempfile::tempdir().unwrap();
        let paths = images(d.path(), 1);
        let config = BatchConfig {
            crop: 4,
            resize: Some(Resize {
                size: 2,
                sampling: Sampling::TfLegacy,
            }),
            batch_size: 1,
            repeat: false,
            ..cfg()
        };
        let b = BatchLoader::new(paths, config, Position::default())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!((b.h, b.w), (2, 2));
        // 6x4 crop to 4x4 takes rows 1..5; legacy 4->2 samples rows/cols 0 and 2: G = 10*(1+y) + x.
        assert_eq!(&b.data[4..8], &[10.0, 12.0, 30.0, 32.0]);
    }

    #[test]
    fn schedule_is_deterministic_and_resumable() {
        let d = tempfile::tempdir().unwrap();
        let paths = images(d.path(), 7);
        let take = |start: Position, k: usize| -> Vec<(Vec<usize>, Position)> {
            BatchLoader::new(paths.clone(), cfg(), start)
                .unwrap()
                .take(k)
                .map(|b| {
                    let b = b.unwrap();
                    (b.indices, b.position)
                })
                .collect()
        };
        let full = take(Position::default(), 7);
        // 7 images, batch 3, drop_last: 2 batches per epoch, each epoch a new permutation.
        assert_eq!(full[2].1, Position { epoch: 1, batch: 0 });
        assert_ne!(full[0].0, full[2].0);
        assert_eq!(full, take(Position::default(), 7));
        let resumed = take(Position::after_steps(3, 2), 4);
        assert_eq!(resumed, full[3..]);
        let mut seen: Vec<usize> = full[0].0.iter().chain(&full[1].0).copied().collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn single_pass_keeps_the_last_partial_batch() {
        let d = tempfile::tempdir().unwrap();
        let paths = images(d.path(), 7);
        let config = BatchConfig {
            shuffle: None,
            drop_last: false,
            repeat: false,
            ..cfg()
        };
        let mut loader = BatchLoader::new(paths, config, Position::default()).unwrap();
        let sizes: Vec<usize> = loader.by_ref().map(|b| b.unwrap().n).collect();
        assert_eq!(sizes, [3, 3, 1]);
        assert!(loader.next_batch().is_none());
        assert!(loader.waited() > Duration::ZERO);
    }

    #[test]
    fn a_bad_file_is_an_err_item_and_the_pass_continues() {
        let d = tempfile::tempdir().unwrap();
        let mut paths = images(d.path(), 4);
        std::fs::write(&paths[1], b"not a png").unwrap();
        paths.push(d.path().join("missing.png"));
        let config = BatchConfig {
            shuffle: None,
            batch_size: 2,
            drop_last: false,
            repeat: false,
            ..cfg()
        };
        let items: Vec<Result<FaceBatch>> = BatchLoader::new(paths, config, Position::default())
            .unwrap()
            .collect();
        assert_eq!(items.len(), 3);
        let e = items[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("001.png: not a PNG or JPEG image"), "{e}");
        assert!(items[1].is_ok());
        assert!(items[2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("missing.png"));
    }

    #[test]
    fn endless_epochs_decode_each_file_once_and_yield_the_same_data() {
        let d = tempfile::tempdir().unwrap();
        let paths = images(d.path(), 6);
        let mut loader = BatchLoader::new(paths.clone(), cfg(), Position::default()).unwrap();
        let mut first = std::collections::BTreeMap::new();
        for _ in 0..2 {
            let b = loader.next_batch().unwrap().unwrap();
            for (k, &i) in b.indices.iter().enumerate() {
                first.insert(i, b.data[k * 12..(k + 1) * 12].to_vec());
            }
        }
        assert_eq!(first.len(), 6);
        // The files are gone: later epochs can only come from the kept crops.
        for p in &paths {
            std::fs::remove_file(p).unwrap();
        }
        for _ in 0..6 {
            let b = loader.next_batch().unwrap().unwrap();
            for (k, i) in b.indices.iter().enumerate() {
                assert_eq!(b.data[k * 12..(k + 1) * 12], first[i][..], "image {i}");
            }
        }
    }

    #[test]
    fn crops_are_kept_only_for_endless_loaders_within_the_budget() {
        let train = BatchConfig::default(); // 160 crops, endless
        assert!(crop_memo(1_000, &train).is_some());
        assert!(crop_memo(202_599, &train).is_none());
        let once = BatchConfig {
            repeat: false,
            ..BatchConfig::default()
        };
        assert!(crop_memo(10, &once).is_none());
    }

    #[test]
    fn impossible_configs_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let paths = images(d.path(), 2);
        let e = BatchLoader::new(paths, cfg(), Position::default())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "invalid batch_size: 2 images never fill a batch of 3 with drop_last"
        );
    }

    #[test]
    fn dropping_mid_epoch_stops_the_producer() {
        let d = tempfile::tempdir().unwrap();
        let paths = images(d.path(), 6);
        let mut loader = BatchLoader::new(
            paths,
            BatchConfig {
                batch_size: 1,
                ..cfg()
            },
            Position::default(),
        )
        .unwrap();
        assert!(loader.next_batch().is_some());
        drop(loader); // must return: the producer is blocked on a full channel
    }
}
