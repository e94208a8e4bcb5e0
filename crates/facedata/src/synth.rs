//! `synth-faces`: writes a deterministic synthetic face dataset in the two real layouts, so a
//! fresh machine can run the whole pipeline and the real loaders are tested on real layouts.
//!
//! ```text
//! out_dir/celeba/img_align_celeba/000001.jpg …   178×218 JPEG (fixed quality)
//! out_dir/celeba/list_attr_celeba.txt            exact CelebA format, 40 attributes
//! out_dir/celeba/list_eval_partition.txt         0 train / 1 val / 2 test, split by identity
//! out_dir/celeba/identity_CelebA.txt
//! out_dir/casia/<7-digit id>/<nnn>.png           182×182 PNG, facenet MTCNN-alignment layout
//! out_dir/casia/bounding_boxes_NNNNN.txt, revision_info.txt   as align_dataset_mtcnn.py leaves them
//! out_dir/wild/<7-digit id>/<nnn>.jpg             raw "in the wild" photos for `align` (wild.rs)
//! ```
//!
//! Determinism: every identity and every image draws from its own ChaCha8 stream derived from
//! `(seed, set, index)`, never from a shared RNG, so thread scheduling cannot change a byte; the
//! renderer avoids platform maths (see `face.rs`) and the encoders are pure Rust at fixed settings.
//! Rendering runs on the caller's rayon pool (wrap the call in `ThreadPool::install` to bound it).
//! What a face looks like and how it is labelled is `face.rs`'s business.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::celeba::{self, CELEBA_ATTRIBUTES};
use crate::error::{Error, Result};
use crate::face::{self, Canvas, Look, Traits};

/// Parameters of `synth-faces` (the stage's `Params`: everything here changes the output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthParams {
    /// Number of CelebA-layout images (`000001.jpg` …); 0 skips the CelebA set.
    pub celeba_images: usize,
    /// Number of distinct people in the CelebA set (identity numbers 1..=this).
    pub celeba_identities: usize,
    /// Fraction of CelebA identities (and their images) in the validation partition (1).
    pub val_fraction: f64,
    /// Fraction of CelebA identities (and their images) in the test partition (2).
    pub test_fraction: f64,
    /// Number of identity folders in the CASIA-layout set; 0 skips it.
    pub identities: usize,
    /// Images per CASIA identity (`001.png` …).
    pub images_per_identity: usize,
    /// JPEG quality (1–100) of the CelebA images.
    pub jpeg_quality: u8,
    /// Identity folders of raw in-the-wild photos (`wild/`, see `wild.rs`); 0 skips them.
    /// Left out of the canonical params when 0, so existing cache keys do not change.
    #[serde(skip_serializing_if = "is_zero")]
    pub wild_identities: usize,
    /// Raw photos per wild identity (`001.jpg` …).
    #[serde(skip_serializing_if = "is_zero")]
    pub wild_images_per_identity: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            celeba_images: 2000,
            celeba_identities: 100,
            val_fraction: 0.1,
            test_fraction: 0.1,
            identities: 40,
            images_per_identity: 25,
            jpeg_quality: 90,
            wild_identities: 0,
            wild_images_per_identity: 0,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SynthSummary {
    pub celeba_images: usize,
    pub celeba_identities: usize,
    /// Images per partition (train, val, test).
    pub partition_counts: [usize; 3],
    pub casia_identities: usize,
    pub casia_images: usize,
    /// Positive count of each CelebA attribute over the CelebA set, in attribute order.
    pub attribute_positives: Vec<(String, usize)>,
    /// What the in-the-wild layout holds (zeros when not written).
    pub wild: crate::wild::WildSummary,
}

/// Which set a stream belongs to (part of the RNG derivation).
#[derive(Clone, Copy)]
enum Stream {
    CelebAIdentity = 1,
    CelebAImage = 2,
    CasiaIdentity = 3,
    CasiaImage = 4,
    Layout = 5,
    Wild = 6,
}

/// SplitMix64 finaliser: a well-mixed 64-bit value from a seed and a stream/index pair.
fn mix(seed: u64, stream: Stream, index: u64) -> u64 {
    let mut z = seed
        ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed, stream, index))
}

/// The stream of wild image `index` (see `wild.rs`).
pub(crate) fn rng_for_wild(seed: u64, index: u64) -> ChaCha8Rng {
    rng_for(seed, Stream::Wild, index)
}

/// The CelebA face at 0-based `index` (image `index + 1`) for `seed`, with its identity number.
pub fn celeba_face(params: &SynthParams, seed: u64, index: usize) -> (u32, Traits, Look) {
    let layout = CelebaLayout::new(params);
    let identity = layout.identity_of(seed, index);
    let traits = Traits::sample(&mut rng_for(seed, Stream::CelebAIdentity, identity as u64));
    let look = Look::sample(
        &mut rng_for(seed, Stream::CelebAImage, index as u64),
        &traits,
    );
    (identity, traits, look)
}

/// The CASIA face for identity `k` (0-based) and image `j` (0-based) for `seed`.
pub fn casia_face(seed: u64, k: usize, j: usize, images_per_identity: usize) -> (Traits, Look) {
    let traits = Traits::sample(&mut rng_for(seed, Stream::CasiaIdentity, k as u64));
    let index = (k * images_per_identity + j) as u64;
    let look = Look::sample(&mut rng_for(seed, Stream::CasiaImage, index), &traits);
    (traits, look)
}

/// Folder name of the CASIA identity `k`: sparse ascending 7-digit ids like the real set's.
pub fn casia_identity_name(k: usize) -> String {
    format!("{:07}", 45 + 54 * k)
}

/// How CelebA images map to partitions and identities.
struct CelebaLayout {
    /// Image counts per partition; images are contiguous: train, then val, then test.
    counts: [usize; 3],
    /// Identity numbers (1-based) per partition.
    ids: [Vec<u32>; 3],
}

impl CelebaLayout {
    fn new(p: &SynthParams) -> CelebaLayout {
        let n = p.celeba_images;
        let k = p.celeba_identities.max(1);
        let frac = |f: f64, total: usize| ((total as f64) * f.clamp(0.0, 1.0)).round() as usize;
        let n_val = frac(p.val_fraction, n);
        let n_test = frac(p.test_fraction, n).min(n - n_val.min(n));
        let n_val = n_val.min(n);
        let counts = [n - n_val - n_test, n_val, n_test];
        let k_val = if n_val > 0 {
            frac(p.val_fraction, k).max(1)
        } else {
            0
        };
        let k_test = if n_test > 0 {
            frac(p.test_fraction, k).max(1)
        } else {
            0
        };
        let k_train = k.saturating_sub(k_val + k_test);
        let all: Vec<u32> = (1..=k as u32).collect();
        let take = |from: usize, len: usize| -> Vec<u32> {
            // Too few identities to keep partitions disjoint: share them rather than fail.
            if len == 0 || from + len > all.len() {
                all.clone()
            } else {
                all[from..from + len].to_vec()
            }
        };
        CelebaLayout {
            counts,
            ids: [
                take(0, k_train),
                take(k_train, k_val),
                take(k_train + k_val, k_test),
            ],
        }
    }

    fn partition_of(&self, index: usize) -> u8 {
        if index < self.counts[0] {
            0
        } else if index < self.counts[0] + self.counts[1] {
            1
        } else {
            2
        }
    }

    fn identity_of(&self, seed: u64, index: usize) -> u32 {
        let ids = &self.ids[self.partition_of(index) as usize];
        let pick = rng_for(seed, Stream::Layout, index as u64).gen_range(0..ids.len().max(1));
        ids.get(pick).copied().unwrap_or(1)
    }
}

fn validate(p: &SynthParams) -> Result<()> {
    let bad = |name, message: String| Err(Error::Config { name, message });
    if p.celeba_images > 999_999 {
        return bad(
            "celeba_images",
            format!(
                "{} is more than the 6-digit names allow (999999)",
                p.celeba_images
            ),
        );
    }
    if p.celeba_images > 0 && p.celeba_identities == 0 {
        return bad(
            "celeba_identities",
            "must be at least 1 when celeba_images > 0".into(),
        );
    }
    if !(0.0..=1.0).contains(&p.val_fraction)
        || !(0.0..=1.0).contains(&p.test_fraction)
        || p.val_fraction + p.test_fraction > 1.0
    {
        return bad(
            "val_fraction",
            format!(
                "val_fraction {} and test_fraction {} must be in 0..1 and sum to at most 1",
                p.val_fraction, p.test_fraction
            ),
        );
    }
    if p.images_per_identity > 999 || p.wild_images_per_identity > 999 {
        return bad(
            "images_per_identity",
            format!(
                "{} is more than the 3-digit names allow (999)",
                p.images_per_identity
            ),
        );
    }
    if !(1..=100).contains(&p.jpeg_quality) {
        return bad(
            "jpeg_quality",
            format!("{} is not in 1..=100", p.jpeg_quality),
        );
    }
    Ok(())
}

/// Writes the synthetic CelebA and CASIA sets under `out_dir` (created if missing).
pub fn generate(out_dir: &Path, params: &SynthParams, seed: u64) -> Result<SynthSummary> {
    generate_cancellable(out_dir, params, seed, &AtomicBool::new(false))
}

/// Like [`generate`], stopping with [`Error::Interrupted`] between images once `cancel` is set.
pub fn generate_cancellable(
    out_dir: &Path,
    params: &SynthParams,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<SynthSummary> {
    validate(params)?;
    let mut summary = SynthSummary {
        celeba_images: 0,
        celeba_identities: 0,
        partition_counts: [0; 3],
        casia_identities: 0,
        casia_images: 0,
        attribute_positives: Vec::new(),
        wild: Default::default(),
    };
    if params.celeba_images > 0 {
        write_celeba(&out_dir.join("celeba"), params, seed, cancel, &mut summary)?;
    }
    if params.identities > 0 && params.images_per_identity > 0 {
        write_casia(&out_dir.join("casia"), params, seed, cancel)?;
        summary.casia_identities = params.identities;
        summary.casia_images = params.identities * params.images_per_identity;
    }
    if params.wild_identities > 0 && params.wild_images_per_identity > 0 {
        summary.wild = crate::wild::write_wild(
            &out_dir.join("wild"),
            seed,
            params.wild_identities,
            params.wild_images_per_identity,
            params.jpeg_quality,
        )?;
    }
    Ok(summary)
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn encode_error(path: &Path, e: image::ImageError) -> Error {
    Error::image(path, format!("encoding failed: {e}"))
}

/// `Err(Interrupted)` once `cancel` is set: checked before each image.
fn check(cancel: &AtomicBool) -> Result<()> {
    match cancel.load(Ordering::Relaxed) {
        true => Err(Error::Interrupted),
        false => Ok(()),
    }
}

fn write_celeba(
    dir: &Path,
    p: &SynthParams,
    seed: u64,
    cancel: &AtomicBool,
    summary: &mut SynthSummary,
) -> Result<()> {
    let img_dir = dir.join(celeba::IMAGE_DIR);
    create_dir(&img_dir)?;
    let layout = CelebaLayout::new(p);
    let rows: Vec<(String, u32, [i8; 40])> = (0..p.celeba_images)
        .into_par_iter()
        .map(|i| -> Result<(String, u32, [i8; 40])> {
            check(cancel)?;
            let (identity, traits, look) = celeba_face(p, seed, i);
            let name = format!("{:06}.jpg", i + 1);
            let path = img_dir.join(&name);
            let img = face::render(&traits, &look, Canvas::CelebA);
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let mut w = BufWriter::new(file);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, p.jpeg_quality)
                .encode_image(&img)
                .map_err(|e| encode_error(&path, e))?;
            std::io::Write::flush(&mut w).map_err(|e| Error::io(&path, e))?;
            Ok((name, identity, face::labels(&traits, &look)))
        })
        .collect::<Result<_>>()?;

    write_file(
        &dir.join(celeba::ATTR_FILE),
        celeba::format_attributes(rows.iter().map(|(n, _, a)| (n.as_str(), a))).as_bytes(),
    )?;
    write_file(
        &dir.join(celeba::PARTITION_FILE),
        celeba::format_pairs(
            rows.iter()
                .enumerate()
                .map(|(i, (n, _, _))| (n.as_str(), layout.partition_of(i))),
        )
        .as_bytes(),
    )?;
    write_file(
        &dir.join(celeba::IDENTITY_FILE),
        celeba::format_pairs(rows.iter().map(|(n, id, _)| (n.as_str(), *id))).as_bytes(),
    )?;

    let mut ids: Vec<u32> = rows.iter().map(|r| r.1).collect();
    ids.sort_unstable();
    ids.dedup();
    summary.celeba_images = rows.len();
    summary.celeba_identities = ids.len();
    summary.partition_counts = layout.counts;
    summary.attribute_positives = CELEBA_ATTRIBUTES
        .iter()
        .enumerate()
        .map(|(a, name)| {
            (
                name.to_string(),
                rows.iter().filter(|r| r.2[a] == 1).count(),
            )
        })
        .collect();
    Ok(())
}

fn write_casia(dir: &Path, p: &SynthParams, seed: u64, cancel: &AtomicBool) -> Result<()> {
    create_dir(dir)?;
    for k in 0..p.identities {
        create_dir(&dir.join(casia_identity_name(k)))?;
    }
    let n = p.identities * p.images_per_identity;
    let boxes: Vec<String> = (0..n)
        .into_par_iter()
        .map(|i| -> Result<String> {
            check(cancel)?;
            let (k, j) = (i / p.images_per_identity, i % p.images_per_identity);
            let (traits, look) = casia_face(seed, k, j, p.images_per_identity);
            let rel = format!("{}/{:03}.png", casia_identity_name(k), j + 1);
            let path: PathBuf = dir.join(&rel);
            let img = face::render(&traits, &look, Canvas::Aligned182);
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let mut w = BufWriter::new(file);
            image::codecs::png::PngEncoder::new_with_quality(
                &mut w,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            )
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| encode_error(&path, e))?;
            std::io::Write::flush(&mut w).map_err(|e| Error::io(&path, e))?;
            // align_dataset_mtcnn.py writes `<output path> x1 y1 x2 y2` of the detected box.
            Ok(format!("{rel} 22 22 160 160\n"))
        })
        .collect::<Result<_>>()?;
    let key = rng_for(seed, Stream::Layout, u64::MAX).gen_range(0..100_000u32);
    write_file(
        &dir.join(format!("bounding_boxes_{key:05}.txt")),
        boxes.concat().as_bytes(),
    )?;
    write_file(
        &dir.join("revision_info.txt"),
        format!("arguments: vaepipe synth-faces (seed {seed})\n--------------------\nsynthetic faces: no MTCNN was run\n").as_bytes(),
    )?;
    Ok(())
}

use image::ImageEncoder as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthParams {
        SynthParams {
            celeba_images: 12,
            celeba_identities: 4,
            identities: 2,
            images_per_identity: 3,
            ..SynthParams::default()
        }
    }

    fn hash_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(root).unwrap().display().to_string();
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn same_params_same_bytes_regardless_of_threads() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        one.install(|| generate(a.path(), &small(), 5)).unwrap();
        generate(b.path(), &small(), 5).unwrap();
        let (ha, hb) = (hash_tree(a.path()), hash_tree(b.path()));
        assert_eq!(ha.len(), 12 + 3 + 6 + 2);
        assert!(
            ha == hb,
            "outputs differ between 1 thread and the default pool"
        );
        let c = tempfile::tempdir().unwrap();
        generate(c.path(), &small(), 6).unwrap();
        assert!(
            hash_tree(c.path()) != ha,
            "a different seed gave the same files"
        );
    }

    #[test]
    fn output_opens_with_the_real_loaders() {
        let d = tempfile::tempdir().unwrap();
        let s = generate(d.path(), &small(), 1).unwrap();
        let c = crate::CelebA::open(&d.path().join("celeba")).unwrap();
        assert_eq!(c.rows.len(), 12);
        assert_eq!(c.rows[0].file_name, "000001.jpg");
        assert!(c
            .rows
            .iter()
            .all(|r| r.partition.is_some() && r.identity.is_some()));
        assert_eq!(s.partition_counts, [10, 1, 1]);
        let img = image::open(d.path().join("celeba/img_align_celeba/000012.jpg")).unwrap();
        assert_eq!((img.width(), img.height()), (178, 218));

        let f = crate::IdentityFolders::open(&d.path().join("casia")).unwrap();
        assert_eq!(f.identities.len(), 2);
        assert_eq!(f.identities[1].name, "0000099");
        assert_eq!(f.identities[0].images, ["001.png", "002.png", "003.png"]);
        assert_eq!(f.ignored.len(), 2); // bounding_boxes_*.txt and revision_info.txt
        let img = image::open(d.path().join("casia/0000045/002.png")).unwrap();
        assert_eq!((img.width(), img.height()), (182, 182));
    }

    #[test]
    fn partitions_do_not_share_identities() {
        let p = SynthParams {
            celeba_images: 200,
            celeba_identities: 20,
            ..SynthParams::default()
        };
        let layout = CelebaLayout::new(&p);
        let mut seen: [std::collections::BTreeSet<u32>; 3] = Default::default();
        for i in 0..200 {
            seen[layout.partition_of(i) as usize].insert(layout.identity_of(3, i));
        }
        assert!(
            seen[0].is_disjoint(&seen[1])
                && seen[1].is_disjoint(&seen[2])
                && seen[0].is_disjoint(&seen[2])
        );
        assert_eq!(layout.counts, [160, 20, 20]);
    }

    #[test]
    fn smiling_is_about_half_and_not_tied_to_identity() {
        let p = SynthParams {
            celeba_images: 400,
            celeba_identities: 5,
            ..SynthParams::default()
        };
        let mut per_id = std::collections::BTreeMap::<u32, (usize, usize)>::new();
        for i in 0..400 {
            let (id, t, l) = celeba_face(&p, 9, i);
            let e = per_id.entry(id).or_default();
            e.0 += 1;
            e.1 += (face::labels(&t, &l)[celeba::SMILING] == 1) as usize;
        }
        let total: usize = per_id.values().map(|v| v.1).sum();
        assert!((160..240).contains(&total), "{total} of 400 smiling");
        for (id, (n, s)) in per_id {
            let f = s as f64 / n as f64;
            assert!(
                (0.25..0.75).contains(&f),
                "identity {id}: {s} of {n} smiling"
            );
        }
    }

    #[test]
    fn params_reject_unknown_fields_and_bad_values() {
        let e = serde_json::from_str::<SynthParams>(r#"{"celeba_imgs": 3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `celeba_imgs`"), "{e}");
        let p: SynthParams = serde_json::from_str(r#"{"celeba_images": 3}"#).unwrap();
        assert_eq!(p.identities, SynthParams::default().identities);
        let bad = SynthParams {
            jpeg_quality: 0,
            ..small()
        };
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            generate(d.path(), &bad, 1).unwrap_err().to_string(),
            "invalid jpeg_quality: 0 is not in 1..=100"
        );
    }
}
