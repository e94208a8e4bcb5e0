//! facenet's `put_images_on_grid` and `misc.imsave`, the way every vaepipe PNG grid is made
//! (reconstructions during training, the add-smile sweep).
//!
//! Layout (models.md §1.7): `cols × rows` tiles of `s × s`, a 3-px black border around and
//! between them, image k at row k / cols, column k % cols. Scaling to bytes is a choice
//! (choices.md): `Clip` keeps true colours (values clipped to 0..255, rounded), `MinMax`
//! reproduces scipy's `bytescale` — a min-max stretch over the whole canvas, borders included.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const BORDER: usize = 3;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GridScaling {
    /// Clip to 0..255: the colours the model produced.
    #[default]
    Clip,
    /// scipy's bytescale over the whole canvas (the original's PNGs).
    Minmax,
}

/// A float RGB canvas, row-major HWC, values in pixel units (0..255 nominal).
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

/// Places `n` square RGB images (NHWC, side `s`) on a `cols × rows` grid.
pub fn put_images_on_grid(images: &[f32], s: usize, cols: usize, rows: usize) -> Result<Canvas> {
    let per_image = s * s * 3;
    if per_image == 0 || !images.len().is_multiple_of(per_image) {
        bail!(
            "grid images: {} values are not a whole number of {s}×{s} RGB images",
            images.len()
        );
    }
    let n = images.len() / per_image;
    if n > cols.saturating_mul(rows) {
        bail!("grid images: {n} images do not fit a {cols}×{rows} grid");
    }
    let side = |tiles: usize| crate::limits::product(&[tiles, s + BORDER], "grid canvas");
    let (width, height) = (side(cols)? + BORDER, side(rows)? + BORDER);
    let what = "grid canvas";
    let mut pixels = crate::limits::filled(
        crate::limits::product(&[width, height, 3], what)?,
        0f32,
        what,
    )?;
    for k in 0..n {
        let (y0, x0) = (
            (k / cols) * (s + BORDER) + BORDER,
            (k % cols) * (s + BORDER) + BORDER,
        );
        for y in 0..s {
            let src = &images[k * per_image + y * s * 3..k * per_image + (y + 1) * s * 3];
            let dst = ((y0 + y) * width + x0) * 3;
            pixels[dst..dst + s * 3].copy_from_slice(src);
        }
    }
    Ok(Canvas {
        width,
        height,
        pixels,
    })
}

impl Canvas {
    pub fn to_rgb8(&self, scaling: GridScaling) -> image::RgbImage {
        let bytes: Vec<u8> = match scaling {
            GridScaling::Clip => self
                .pixels
                .iter()
                .map(|&v| v.clamp(0.0, 255.0).round() as u8)
                .collect(),
            GridScaling::Minmax => {
                let lo = self.pixels.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = self
                    .pixels
                    .iter()
                    .copied()
                    .fold(f32::NEG_INFINITY, f32::max);
                let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
                // bytescale: uint8(clip((x - cmin) * scale, 0, 255) + 0.5)
                self.pixels
                    .iter()
                    .map(|&v| (((v - lo) * scale).clamp(0.0, 255.0) + 0.5) as u8)
                    .collect()
            }
        };
        // The buffer length is width·height·3 by construction.
        image::RgbImage::from_raw(self.width as u32, self.height as u32, bytes)
            .unwrap_or_else(|| image::RgbImage::new(self.width as u32, self.height as u32))
    }

    pub fn save_png(&self, path: &Path, scaling: GridScaling) -> Result<()> {
        self.to_rgb8(scaling)
            .save(path)
            .with_context(|| format!("failed to write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(n: usize, s: usize, value: impl Fn(usize) -> f32) -> Vec<f32> {
        (0..n)
            .flat_map(|k| std::iter::repeat_n(value(k), s * s * 3))
            .collect()
    }

    #[test]
    fn training_grid_has_facenets_geometry() {
        // 16 columns × 8 rows of 64-px reconstructions: 539 high, 1075 wide (models.md §1.7).
        let canvas = put_images_on_grid(&solid(128, 64, |_| 1.0), 64, 16, 8).unwrap();
        assert_eq!((canvas.height, canvas.width), (539, 1075));
        // The add-smile grid: 20 × 8 → 539 × 1343.
        let canvas = put_images_on_grid(&solid(160, 64, |_| 1.0), 64, 20, 8).unwrap();
        assert_eq!((canvas.height, canvas.width), (539, 1343));
    }

    #[test]
    fn images_go_row_major_with_three_pixel_borders() {
        let s = 2;
        let canvas = put_images_on_grid(&solid(3, s, |k| 10.0 * (k + 1) as f32), s, 2, 2).unwrap();
        let at = |y: usize, x: usize| canvas.pixels[(y * canvas.width + x) * 3];
        assert_eq!((canvas.width, canvas.height), (2 * 5 + 3, 2 * 5 + 3));
        assert_eq!(at(0, 0), 0.0); // border
        assert_eq!(at(3, 3), 10.0); // image 0 at row 0, col 0
        assert_eq!(at(3, 8), 20.0); // image 1 at row 0, col 1
        assert_eq!(at(8, 3), 30.0); // image 2 at row 1, col 0
        assert_eq!(at(8, 8), 0.0); // empty slot stays black
        assert_eq!(at(5, 3), 0.0); // border between rows
    }

    #[test]
    fn clip_keeps_colours_and_minmax_stretches_the_canvas() {
        let canvas = Canvas {
            width: 3,
            height: 1,
            pixels: vec![0.0, 0.0, 0.0, 100.0, 100.0, 100.0, 300.0, -5.0, 50.0],
        };
        let clip = canvas.to_rgb8(GridScaling::Clip);
        assert_eq!(clip.as_raw(), &vec![0, 0, 0, 100, 100, 100, 255, 0, 50]);
        let stretched = canvas.to_rgb8(GridScaling::Minmax);
        // cmin = -5, cmax = 300: 100 → (105·255/305)+0.5 = 88.28 → 88
        assert_eq!(stretched.as_raw()[3], 88);
        assert_eq!(stretched.as_raw()[6], 255);
        assert_eq!(stretched.as_raw()[7], 0);
    }

    #[test]
    fn too_many_images_is_an_error() {
        assert!(put_images_on_grid(&solid(5, 2, |_| 0.0), 2, 2, 2).is_err());
        assert!(put_images_on_grid(&[0.0; 5], 2, 2, 2).is_err());
    }
}
