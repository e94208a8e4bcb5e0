//! The in-the-wild layout of `synth-faces`: raw photos for the `align` stage, like raw
//! CASIA-WebFace before facenet's `align_dataset_mtcnn.py` — identity folders
//! `wild/<7-digit id>/<nnn>.jpg` whose images are backgrounds of varying size with the person's
//! face drawn at varying scale and position, a few with a second person's face beside it and a
//! few with no face at all.
//!
//! Each image draws from its own ChaCha8 stream of `(seed, image index)` and the people are
//! the CASIA-layout identities (`synth::casia_face`), so the aligned result of identity `k`
//! shows the same person as `casia/<k>`. The face itself is `face::render`'s 182-px aligned
//! tile, resized with a fixed filter and pasted; nothing here depends on the platform.

use std::io::BufWriter;
use std::path::Path;

use rand::Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::face::{self, Canvas};
use crate::synth::{casia_face, casia_identity_name, rng_for_wild};

/// What one wild image holds (for tests and the summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Scene {
    NoFace,
    OneFace,
    TwoFaces,
}

/// Counts of what [`write_wild`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WildSummary {
    pub images: usize,
    pub no_face: usize,
    pub two_faces: usize,
}

/// Face tiles are drawn between these sizes (pixels, square)…
const FACE_SIZE: (u32, u32) = (72, 150);
/// … on backgrounds between these sizes (each side).
const CANVAS_SIZE: (u32, u32) = (160, 320);
/// One image in this many has no face, one in this many two faces.
const NO_FACE_EVERY: u32 = 12;
const TWO_FACES_EVERY: u32 = 8;

/// The scene and the pixels of wild image `j` of identity `k` (of `identities`).
pub fn wild_image(
    seed: u64,
    k: usize,
    j: usize,
    identities: usize,
    images_per_identity: usize,
) -> (Scene, image::RgbImage) {
    let index = k * images_per_identity + j;
    let mut rng = rng_for_wild(seed, index as u64);
    let w = rng.gen_range(CANVAS_SIZE.0..=CANVAS_SIZE.1);
    let h = rng.gen_range(CANVAS_SIZE.0..=CANVAS_SIZE.1);
    let roll = rng.gen_range(0..NO_FACE_EVERY * TWO_FACES_EVERY);
    let scene = if roll % NO_FACE_EVERY == 0 {
        Scene::NoFace
    } else if roll % TWO_FACES_EVERY == 0 && identities > 1 {
        Scene::TwoFaces
    } else {
        Scene::OneFace
    };
    let mut canvas = background(&mut rng, w, h);
    let people: &[usize] = match scene {
        Scene::NoFace => &[],
        Scene::OneFace => &[k],
        Scene::TwoFaces => &[k, (k + 1) % identities],
    };
    let slots = people.len().max(1) as u32;
    for (slot, &person) in people.iter().enumerate() {
        let (traits, look) = casia_face(seed, person, j, images_per_identity);
        let tile = face::render(&traits, &look, Canvas::Aligned182);
        // Two faces share the width: each gets its own half.
        let room = (w / slots).min(h);
        let size = rng
            .gen_range(FACE_SIZE.0..=FACE_SIZE.1)
            .min(room.saturating_sub(4))
            .max(24);
        let tile =
            image::imageops::resize(&tile, size, size, image::imageops::FilterType::Triangle);
        let x0 = slot as u32 * (w / slots);
        let x = x0 + rng.gen_range(0..=(w / slots).saturating_sub(size));
        let y = rng.gen_range(0..=h.saturating_sub(size));
        image::imageops::replace(&mut canvas, &tile, x as i64, y as i64);
    }
    (scene, canvas)
}

/// A smooth two-colour gradient with a little deterministic texture.
fn background<R: Rng>(rng: &mut R, w: u32, h: u32) -> image::RgbImage {
    let c0: [f32; 3] = std::array::from_fn(|_| rng.gen_range(20.0..235.0));
    let c1: [f32; 3] = std::array::from_fn(|_| rng.gen_range(20.0..235.0));
    let stripes = rng.gen_range(3..12) as u32;
    image::RgbImage::from_fn(w, h, |x, y| {
        let t = (x + y) as f32 / (w + h) as f32;
        let texture = if (x / stripes + y / stripes).is_multiple_of(2) {
            6.0
        } else {
            -6.0
        };
        image::Rgb(std::array::from_fn(|c| {
            (c0[c] * (1.0 - t) + c1[c] * t + texture).clamp(0.0, 255.0) as u8
        }))
    })
}

/// Writes `dir/<id>/<nnn>.jpg` for `identities × images_per_identity` wild images.
pub fn write_wild(
    dir: &Path,
    seed: u64,
    identities: usize,
    images_per_identity: usize,
    jpeg_quality: u8,
) -> Result<WildSummary> {
    for k in 0..identities {
        let d = dir.join(casia_identity_name(k));
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let scenes: Vec<Scene> = (0..identities * images_per_identity)
        .into_par_iter()
        .map(|i| -> Result<Scene> {
            let (k, j) = (i / images_per_identity, i % images_per_identity);
            let (scene, img) = wild_image(seed, k, j, identities, images_per_identity);
            let path = dir
                .join(casia_identity_name(k))
                .join(format!("{:03}.jpg", j + 1));
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let mut w = BufWriter::new(file);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, jpeg_quality)
                .encode_image(&img)
                .map_err(|e| Error::image(&path, format!("encoding failed: {e}")))?;
            std::io::Write::flush(&mut w).map_err(|e| Error::io(&path, e))?;
            Ok(scene)
        })
        .collect::<Result<_>>()?;
    Ok(WildSummary {
        images: scenes.len(),
        no_face: scenes.iter().filter(|s| **s == Scene::NoFace).count(),
        two_faces: scenes.iter().filter(|s| **s == Scene::TwoFaces).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wild_images_vary_in_size_and_include_empty_and_crowded_scenes() {
        let mut sizes = std::collections::BTreeSet::new();
        let mut scenes = Vec::new();
        for j in 0..60 {
            let (scene, img) = wild_image(7, j % 3, j / 3, 3, 20);
            assert!((CANVAS_SIZE.0..=CANVAS_SIZE.1).contains(&img.width()));
            assert!((CANVAS_SIZE.0..=CANVAS_SIZE.1).contains(&img.height()));
            sizes.insert((img.width(), img.height()));
            scenes.push(scene);
        }
        assert!(sizes.len() > 30, "sizes barely vary: {sizes:?}");
        assert!(scenes.contains(&Scene::NoFace));
        assert!(scenes.contains(&Scene::TwoFaces));
        assert!(scenes.iter().filter(|s| **s == Scene::OneFace).count() > 40);
        // Deterministic.
        assert_eq!(wild_image(7, 1, 2, 3, 20).1, wild_image(7, 1, 2, 3, 20).1);
        assert_ne!(wild_image(7, 1, 2, 3, 20).1, wild_image(8, 1, 2, 3, 20).1);
    }

    #[test]
    fn write_wild_lays_out_identity_folders_of_jpegs() {
        let dir = tempfile::tempdir().unwrap();
        let s = write_wild(dir.path(), 3, 2, 4, 90).unwrap();
        assert_eq!(s.images, 8);
        let first = dir.path().join(casia_identity_name(0)).join("001.jpg");
        let img = image::open(&first).unwrap();
        assert!(img.width() >= CANVAS_SIZE.0);
        assert!(dir
            .path()
            .join(casia_identity_name(1))
            .join("004.jpg")
            .is_file());
    }
}
