//! Bilinear resize as TF1's `tf.image.resize_images` does it (train_vae.py:95, :117; TF
//! `image_resizer_state.h` `LegacyScaler` / `HalfPixelScaler`, `resize_bilinear_op.cc`
//! `compute_interpolation_weights`), and PyTorch's half-pixel variant (models.md §1.6 step 6,
//! formats.md §6.3).
//!
//! For each output index i: src = i·in/out (legacy) or (i + ½)·in/out − ½ (half-pixel);
//! lower = max(floor(src), 0), upper = min(ceil(src), in − 1), lerp = src − floor(src); the
//! value is x[lower]·(1 − lerp) + x[upper]·lerp. Scales and sources are computed in f32 as TF does.
//! The resize is two `[out, in]` interpolation matrices applied by matmul, so it runs on any
//! device and autograd flows through it (the perceptual loss upsamples reconstructions).
//! No antialiasing, as TF1 and `interpolate(antialias=False)`.

use tch::{Device, Kind, Tensor};

/// Where output pixels sample the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// TF1 `align_corners=False` without half-pixel centres: src = dst·in/out.
    #[default]
    TfLegacy,
    /// Half-pixel centres (PyTorch `interpolate(bilinear, align_corners=False)`, TF2).
    HalfPixel,
}

/// `[out, in]` matrix M with `y = M·x` resizing one axis of length `input` to `output`.
pub fn interpolation_matrix(input: i64, output: i64, sampling: Sampling) -> Vec<f32> {
    let mut m = vec![0f32; (output * input) as usize];
    let scale = input as f32 / output as f32;
    for i in 0..output {
        let src = match sampling {
            Sampling::TfLegacy => i as f32 * scale,
            Sampling::HalfPixel => (i as f32 + 0.5) * scale - 0.5,
        };
        let floor = src.floor();
        let lower = (floor as i64).clamp(0, input - 1);
        let upper = (src.ceil() as i64).clamp(0, input - 1);
        let lerp = src - floor;
        let row = (i * input) as usize;
        m[row + lower as usize] += 1.0 - lerp;
        m[row + upper as usize] += lerp;
    }
    m
}

fn matrix(input: i64, output: i64, sampling: Sampling, kind: Kind, device: Device) -> Tensor {
    Tensor::from_slice(&interpolation_matrix(input, output, sampling))
        .view([output, input]) // [out, in]
        .to_kind(kind)
        .to_device(device)
}

/// Resizes `[..., H, W]` (NCHW images) to `[..., out_h, out_w]`. The same size returns the
/// input unchanged (both samplings are the identity then).
pub fn resize(x: &Tensor, out_h: i64, out_w: i64, sampling: Sampling) -> Tensor {
    let size = x.size();
    let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
    if (h, w) == (out_h, out_w) {
        return x.shallow_clone();
    }
    let kind = match x.kind() {
        Kind::Double => Kind::Double,
        Kind::Half | Kind::BFloat16 => x.kind(),
        _ => Kind::Float,
    };
    let x = x.to_kind(kind);
    let mh = matrix(h, out_h, sampling, kind, x.device()); // [out_h, H]
    let mw = matrix(w, out_w, sampling, kind, x.device()); // [out_w, W]
    mh.matmul(&x) // [..., out_h, W]
        .matmul(&mw.tr()) // [..., out_h, out_w]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[f32], output: i64, sampling: Sampling, expected: &[f32]) {
        let n = input.len() as i64;
        // One row resized along W, with H kept at 1.
        let x = Tensor::from_slice(input).view([1, 1, 1, n]);
        let y = resize(&x, 1, output, sampling);
        let got = Vec::<f32>::try_from(&y.view([-1])).unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "got {got:?}, expected {expected:?}");
        }
        // The same along H.
        let y = resize(&x.view([1, 1, n, 1]), output, 1, sampling);
        assert_eq!(
            Vec::<f32>::try_from(&y.view([-1])).unwrap().len(),
            expected.len()
        );
    }

    #[test]
    fn legacy_4_to_2_picks_pixels_0_and_2() {
        check(&[1.0, 2.0, 3.0, 4.0], 2, Sampling::TfLegacy, &[1.0, 3.0]);
    }

    #[test]
    fn legacy_2_to_4_interpolates_then_clamps() {
        check(
            &[10.0, 20.0],
            4,
            Sampling::TfLegacy,
            &[10.0, 15.0, 20.0, 20.0],
        );
    }

    #[test]
    fn half_pixel_4_to_2_averages_pairs() {
        check(&[1.0, 2.0, 3.0, 4.0], 2, Sampling::HalfPixel, &[1.5, 3.5]);
    }

    #[test]
    fn half_pixel_2_to_4_clamps_both_ends() {
        // src = −0.25, 0.25, 0.75, 1.25 → x0, x0+0.25·Δ, x0+0.75·Δ, x1
        check(
            &[10.0, 20.0],
            4,
            Sampling::HalfPixel,
            &[10.0, 12.5, 17.5, 20.0],
        );
    }

    #[test]
    fn legacy_160_to_64_samples_every_2_5_pixels() {
        let m = interpolation_matrix(160, 64, Sampling::TfLegacy);
        // row 1: src 2.5 → 0.5·x2 + 0.5·x3; row 63: src 157.5
        assert_eq!(m[160 + 2], 0.5);
        assert_eq!(m[160 + 3], 0.5);
        assert_eq!(m[63 * 160 + 157], 0.5);
        assert_eq!(m[63 * 160 + 158], 0.5);
        for row in m.chunks(160) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn half_pixel_matches_torch_interpolate() {
        tch::manual_seed(0);
        let x = Tensor::randn([2, 3, 10, 7], (Kind::Float, Device::Cpu));
        for (oh, ow) in [(4, 3), (23, 16), (10, 14)] {
            let ours = resize(&x, oh, ow, Sampling::HalfPixel);
            let torch = x.upsample_bilinear2d([oh, ow], false, None, None);
            assert!(ours.allclose(&torch, 1e-5, 1e-5, false), "{oh}×{ow}");
        }
    }

    #[test]
    fn resize_is_differentiable() {
        let x = Tensor::ones([1, 1, 2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = resize(&x, 4, 4, Sampling::TfLegacy);
        y.sum(Kind::Float).backward();
        // Each output pixel's weights sum to 1, so the input gradients sum to 16.
        assert!((x.grad().sum(Kind::Float).double_value(&[]) - 16.0).abs() < 1e-5);
    }
}
