//! TensorFlow-compatible image operations used by facenet's generative scripts, on plain slices.
//!
//! - [`crop_or_pad`]: `tf.image.resize_image_with_crop_or_pad` (formats.md §6.3): per axis a centre
//!   crop at `floor((size - target) / 2)` or zero padding with `floor((target - size) / 2)` before.
//! - [`resize_bilinear`]: bilinear resize with TF1's legacy sampling (`src = dst * in / out`, what
//!   `train_vae.py` ran) or half-pixel centres (`src = (dst + 0.5) * in / out - 0.5`, what PyTorch's
//!   `interpolate(align_corners=False)` and TF2 do). Arithmetic is f32 in TF's order.
//! - [`normalise_to_chw`]: uint8 HWC → f32 CHW `(x - mean) / std` with facenet's dataset constants.
//!
//! Everything here is pure and allocation-explicit; decoding and batching live in `batches.rs`.

/// Per-channel (RGB) mean of facenet's training set, hard-coded in `train_vae.py` (models.md §1.6).
// The digits are the original's, kept so the constant can be grepped against the source.
#[allow(clippy::excessive_precision)]
pub const FACENET_MEAN: [f32; 3] = [134.107_147_22, 102.520_408_63, 87.154_365_54];

/// Per-channel std: `sqrt([3941.30175781, 2856.94287109, 2519.35791016])` (models.md §1.6).
// f64 square roots of the original's variances, rounded to f32 by the compiler.
#[allow(clippy::excessive_precision)]
pub const FACENET_STD: [f32; 3] = [
    62.779_787_812_718_83,
    53.450_377_651_518_984,
    50.193_205_816_723_84,
];

/// Memory layout of a single image in a float slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Height, width, channel (TF's NHWC without the N).
    Hwc,
    /// Channel, height, width (torch's NCHW without the N).
    Chw,
}

/// Where output pixel `dst` samples the input in [`resize_bilinear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// TF1 `resize_images(align_corners=False)` before half-pixel centres: `src = dst * in / out`.
    /// The original `train_vae.py`; 160→64 samples rows 0, 2.5, 5, …, 157.5.
    #[default]
    TfLegacy,
    /// Half-pixel centres: `src = (dst + 0.5) * in / out - 0.5` (PyTorch, TF2).
    HalfPixel,
}

/// `tf.image.resize_image_with_crop_or_pad` on an HWC image of `h`×`w`×`c` values.
///
/// Returns a `target_h`×`target_w`×`c` image; padding uses `T::default()` (zero).
/// Panics only if `src.len() != h * w * c`, which is a programming error, not user input.
pub fn crop_or_pad<T: Copy + Default>(
    src: &[T],
    h: usize,
    w: usize,
    c: usize,
    target_h: usize,
    target_w: usize,
) -> Vec<T> {
    assert_eq!(
        src.len(),
        h * w * c,
        "crop_or_pad: slice length is not h*w*c"
    );
    let mut out = vec![T::default(); target_h * target_w * c];
    let (src_y, dst_y, rows) = axis_window(h, target_h);
    let (src_x, dst_x, cols) = axis_window(w, target_w);
    for r in 0..rows {
        let s = ((src_y + r) * w + src_x) * c;
        let d = ((dst_y + r) * target_w + dst_x) * c;
        out[d..d + cols * c].copy_from_slice(&src[s..s + cols * c]);
    }
    out
}

/// For one axis: (offset in the source, offset in the target, length copied).
fn axis_window(size: usize, target: usize) -> (usize, usize, usize) {
    if size >= target {
        ((size - target) / 2, 0, target)
    } else {
        (0, (target - size) / 2, size)
    }
}

/// The crop window `(top, left)` that [`crop_or_pad`] takes from an `h`×`w` image, when both axes
/// are at least the target size. CelebA 178×218 → 160: `(29, 9)`; CASIA 182×182 → 160: `(11, 11)`.
pub fn crop_offset(h: usize, w: usize, target_h: usize, target_w: usize) -> Option<(usize, usize)> {
    (h >= target_h && w >= target_w).then(|| ((h - target_h) / 2, (w - target_w) / 2))
}

/// One output coordinate's interpolation: the two source indices and the weight of the upper.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Interp {
    lower: usize,
    upper: usize,
    lerp: f32,
}

/// TF's `compute_interpolation_weights` for one axis.
fn interpolation(in_size: usize, out_size: usize, sampling: Sampling) -> Vec<Interp> {
    // TF computes the scale in f32 (`CalculateResizeScale`).
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let src = match sampling {
                Sampling::TfLegacy => i as f32 * scale,
                Sampling::HalfPixel => (i as f32 + 0.5) * scale - 0.5,
            };
            let floor = src.floor();
            let lower = (floor.max(0.0) as usize).min(in_size - 1);
            let upper = (src.ceil().max(0.0) as usize).min(in_size - 1);
            Interp {
                lower,
                upper,
                lerp: src - floor,
            }
        })
        .collect()
}

/// Bilinear resize of one `h`×`w`×`c` image stored in `layout`, returning the same layout.
///
/// `top = tl + (tr - tl) * x_lerp; out = top + (bottom - top) * y_lerp`, as in TF's kernel. No
/// antialiasing (neither TF1 nor torch antialias by default). Panics only on a slice whose length
/// is not `h * w * c` or on zero sizes (programming errors).
#[allow(clippy::too_many_arguments)]
pub fn resize_bilinear(
    src: &[f32],
    layout: Layout,
    h: usize,
    w: usize,
    c: usize,
    out_h: usize,
    out_w: usize,
    sampling: Sampling,
) -> Vec<f32> {
    assert_eq!(
        src.len(),
        h * w * c,
        "resize_bilinear: slice length is not h*w*c"
    );
    assert!(
        h > 0 && w > 0 && out_h > 0 && out_w > 0,
        "resize_bilinear: zero size"
    );
    let ys = interpolation(h, out_h, sampling);
    let xs = interpolation(w, out_w, sampling);
    let at = |y: usize, x: usize, ch: usize| match layout {
        Layout::Hwc => src[(y * w + x) * c + ch],
        Layout::Chw => src[(ch * h + y) * w + x],
    };
    let mut out = vec![0.0f32; out_h * out_w * c];
    for (oy, yi) in ys.iter().enumerate() {
        for (ox, xi) in xs.iter().enumerate() {
            for ch in 0..c {
                let tl = at(yi.lower, xi.lower, ch);
                let tr = at(yi.lower, xi.upper, ch);
                let bl = at(yi.upper, xi.lower, ch);
                let br = at(yi.upper, xi.upper, ch);
                let top = tl + (tr - tl) * xi.lerp;
                let bottom = bl + (br - bl) * xi.lerp;
                let v = top + (bottom - top) * yi.lerp;
                let o = match layout {
                    Layout::Hwc => (oy * out_w + ox) * c + ch,
                    Layout::Chw => (ch * out_h + oy) * out_w + ox,
                };
                out[o] = v;
            }
        }
    }
    out
}

/// uint8 RGB HWC (`h`×`w`×3) → f32 CHW with `(x - mean[c]) / std[c]`, written into `out`
/// (length `3 * h * w`), so a batch can be filled in place.
pub fn normalise_to_chw(
    src: &[u8],
    h: usize,
    w: usize,
    mean: [f32; 3],
    std: [f32; 3],
    out: &mut [f32],
) {
    assert_eq!(
        src.len(),
        h * w * 3,
        "normalise_to_chw: source is not h*w*3"
    );
    assert_eq!(
        out.len(),
        h * w * 3,
        "normalise_to_chw: output is not 3*h*w"
    );
    let plane = h * w;
    for (i, px) in src.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = (px[ch] as f32 - mean[ch]) / std[ch];
        }
    }
}

/// Inverse of [`normalise_to_chw`] for one CHW image: `x * std + mean`, clamped and rounded to
/// uint8 HWC (for looking at what the model sees).
pub fn denormalise_chw(src: &[f32], h: usize, w: usize, mean: [f32; 3], std: [f32; 3]) -> Vec<u8> {
    assert_eq!(src.len(), h * w * 3, "denormalise_chw: source is not 3*h*w");
    let plane = h * w;
    let mut out = vec![0u8; plane * 3];
    for i in 0..plane {
        for ch in 0..3 {
            let v = src[ch * plane + i] * std[ch] + mean[ch];
            out[i * 3 + ch] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_crop(h: usize, w: usize, th: usize, tw: usize, expect: &[&str]) {
        let src: Vec<u8> = (0..(h * w) as u8).map(|v| v + 1).collect();
        let out = crop_or_pad(&src, h, w, 1, th, tw);
        let rows: Vec<String> = out
            .chunks(tw)
            .map(|r| {
                r.iter()
                    .map(|v| format!("{v:2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(rows, expect);
    }

    #[test]
    fn crop_takes_floor_offset_centre() {
        // 4x5 image, values 1..=20; crop to 2x2: rows from 1, cols from 1.
        check_crop(4, 5, 2, 2, &[" 7  8", "12 13"]);
        // odd difference: 5 -> 2 crops at floor(3/2) = 1.
        check_crop(5, 1, 2, 1, &[" 2", " 3"]);
    }

    #[test]
    fn pad_puts_floor_half_before() {
        // 1x1 -> 4x3: pad rows 1 before 2 after, cols 1 before 1 after.
        check_crop(
            1,
            1,
            4,
            3,
            &[" 0  0  0", " 0  1  0", " 0  0  0", " 0  0  0"],
        );
    }

    #[test]
    fn crop_one_axis_pad_the_other() {
        check_crop(3, 1, 1, 3, &[" 0  2  0"]);
    }

    #[test]
    fn facenet_crop_offsets() {
        assert_eq!(crop_offset(218, 178, 160, 160), Some((29, 9)));
        assert_eq!(crop_offset(182, 182, 160, 160), Some((11, 11)));
        assert_eq!(crop_offset(150, 178, 160, 160), None);
    }

    #[test]
    fn legacy_160_to_64_samples_every_2_5() {
        let w = interpolation(160, 64, Sampling::TfLegacy);
        assert_eq!((w[1].lower, w[1].upper, w[1].lerp), (2, 3, 0.5));
        assert_eq!((w[2].lower, w[2].upper, w[2].lerp), (5, 5, 0.0));
        assert_eq!((w[63].lower, w[63].upper, w[63].lerp), (157, 158, 0.5));
    }

    #[test]
    fn half_pixel_160_to_64_is_shifted_by_0_75() {
        let w = interpolation(160, 64, Sampling::HalfPixel);
        // (0 + 0.5) * 2.5 - 0.5 = 0.75
        assert_eq!((w[0].lower, w[0].upper, w[0].lerp), (0, 1, 0.75));
        // (63.5) * 2.5 - 0.5 = 158.25
        assert_eq!((w[63].lower, w[63].upper, w[63].lerp), (158, 159, 0.25));
    }

    /// 4x4 single-channel ramp v(y, x) = 10 y + x, resized to 3x3 and 8x8 by hand.
    fn ramp() -> Vec<f32> {
        (0..4)
            .flat_map(|y| (0..4).map(move |x| (10 * y + x) as f32))
            .collect()
    }

    #[test]
    fn legacy_downsample_by_hand() {
        // scale 4/3: src = 0, 1.333, 2.667; v = 10*y + x exactly (bilinear of a linear ramp).
        let out = resize_bilinear(&ramp(), Layout::Hwc, 4, 4, 1, 3, 3, Sampling::TfLegacy);
        let s = 4.0f32 / 3.0;
        let expect = |y: f32, x: f32| 10.0 * y + x;
        assert_eq!(out[0], 0.0);
        assert!((out[4] - expect(s, s)).abs() < 1e-5, "{}", out[4]);
        assert!(
            (out[8] - expect(2.0 * s, 2.0 * s)).abs() < 1e-5,
            "{}",
            out[8]
        );
    }

    #[test]
    fn legacy_upsample_clamps_at_the_last_pixel() {
        // 4 -> 8: src = dst / 2; dst 7 -> 3.5 -> lower 3, upper min(4, 3) = 3: value of pixel 3.
        let out = resize_bilinear(&ramp(), Layout::Hwc, 4, 4, 1, 8, 8, Sampling::TfLegacy);
        assert_eq!(out[7], 3.0); // row 0, col 7
        assert_eq!(out[1], 0.5); // row 0, col 1 -> x = 0.5
        assert_eq!(out[8 * 7 + 7], 33.0);
        assert_eq!(out[8 * 3 + 2], 10.0 * 1.5 + 1.0); // row 3 -> y 1.5, col 2 -> x 1
    }

    #[test]
    fn half_pixel_upsample_by_hand() {
        // 4 -> 8: src = (dst + 0.5) / 2 - 0.5; dst 0 -> -0.25 (clamped: pixel 0),
        // dst 1 -> 0.25, dst 7 -> 3.25 (clamped to pixel 3).
        let out = resize_bilinear(&ramp(), Layout::Hwc, 4, 4, 1, 8, 8, Sampling::HalfPixel);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], 0.25);
        assert_eq!(out[7], 3.0);
        assert_eq!(out[8 + 1], 2.5 + 0.25); // y 0.25, x 0.25
    }

    #[test]
    fn hwc_and_chw_agree() {
        // Two channels: ch1 = 100 - ch0.
        let ch0 = ramp();
        let hwc: Vec<f32> = ch0.iter().flat_map(|v| [*v, 100.0 - v]).collect();
        let chw: Vec<f32> = ch0
            .iter()
            .copied()
            .chain(ch0.iter().map(|v| 100.0 - v))
            .collect();
        let a = resize_bilinear(&hwc, Layout::Hwc, 4, 4, 2, 3, 5, Sampling::TfLegacy);
        let b = resize_bilinear(&chw, Layout::Chw, 4, 4, 2, 3, 5, Sampling::TfLegacy);
        for y in 0..3 {
            for x in 0..5 {
                for c in 0..2 {
                    assert_eq!(a[(y * 5 + x) * 2 + c], b[(c * 3 + y) * 5 + x]);
                }
            }
        }
    }

    #[test]
    fn normalise_matches_facenet_constants() {
        let src = [134u8, 102, 87, 255, 0, 10];
        let mut out = [0.0f32; 6];
        normalise_to_chw(&src, 1, 2, FACENET_MEAN, FACENET_STD, &mut out);
        assert!((out[0] - (134.0 - 134.107_15) / 62.779_79).abs() < 1e-6);
        assert!((out[1] - (255.0 - 134.107_15) / 62.779_79).abs() < 1e-6);
        assert!((out[3] - (0.0 - 102.520_41) / 53.450_38).abs() < 1e-6);
        assert!((out[5] - (10.0 - 87.154_37) / 50.193_21).abs() < 1e-6);
        assert_eq!(denormalise_chw(&out, 1, 2, FACENET_MEAN, FACENET_STD), src);
    }
}
