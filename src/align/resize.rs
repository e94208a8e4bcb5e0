//! The two image resizes whose exact arithmetic decides MTCNN parity with facenet:
//!
//! - [`cv2_area`]: OpenCV's `cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)`, which
//!   `detect_face.py`'s `imresample` uses for the pyramid levels (on the uint8 photo) and for the
//!   24/48-px R-Net/O-Net patches (on float64 arrays). Shrinking on both axes is a true area
//!   average (`resizeArea_` over `computeResizeAreaTab`'s float weights, accumulated in float for
//!   uint8 and double for float64, rounded half-to-even for uint8); anything else (growing, or
//!   shrinking one axis only) is OpenCV's "area-mode" bilinear emulation, fixed-point for uint8
//!   (11-bit coefficients, as `resizeGeneric_`).
//! - [`pil_bilinear`]: Pillow's `Image.resize(size, BILINEAR)` of a uint8 RGB image, which is
//!   what `scipy.misc.imresize(crop, (s, s), interp='bilinear')` in `align_dataset_mtcnn.py`
//!   does: a separable triangle filter widened by the shrink factor (so it antialiases),
//!   22-bit fixed-point coefficients, horizontal pass then vertical, each rounded to uint8.
//!
//! Images are row-major `[height][width][channels]` slices. Both are checked against values
//! computed by OpenCV and Pillow themselves (`tests/fixtures/mtcnn/make_resize_fixture.py`).

/// An image buffer with its shape: `data[(y * width + x) * channels + c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar<T> {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<T>,
}

impl<T: Copy + Default> Planar<T> {
    pub fn zeros(height: usize, width: usize, channels: usize) -> Self {
        Planar {
            height,
            width,
            channels,
            data: vec![T::default(); height * width * channels],
        }
    }

    pub fn at(&self, y: usize, x: usize, c: usize) -> T {
        self.data[(y * self.width + x) * self.channels + c]
    }
}

/// A sample type `cv2_area` works on: uint8 (accumulates in f32, rounds on store) or float64.
pub trait AreaSample: Copy + Default {
    type Acc: Copy
        + Default
        + std::ops::Add<Output = Self::Acc>
        + std::ops::Mul<Output = Self::Acc>
        + From<f32>;
    fn widen(self) -> Self::Acc;
    fn store(acc: Self::Acc) -> Self;
    /// OpenCV's `resizeAreaFast_` for integer shrink factors: the mean of each block, times a
    /// float `1/area` (uint8 with a 2×2 block: `(sum + 2) >> 2`, its SIMD path).
    fn block_mean(
        src: &Planar<Self>,
        out_h: usize,
        out_w: usize,
        sy: usize,
        sx: usize,
    ) -> Planar<Self>;
    /// The bilinear emulation when not shrinking on both axes.
    fn linear(src: &Planar<Self>, taps_y: &[LinearTap], taps_x: &[LinearTap]) -> Planar<Self>;
}

impl AreaSample for u8 {
    type Acc = f32;
    fn widen(self) -> f32 {
        self as f32
    }
    fn store(acc: f32) -> u8 {
        // OpenCV's saturate_cast<uchar>(float) = cvRound: round half to even, then clamp.
        acc.round_ties_even().clamp(0.0, 255.0) as u8
    }
    fn linear(src: &Planar<u8>, taps_y: &[LinearTap], taps_x: &[LinearTap]) -> Planar<u8> {
        linear_fixed_point(src, taps_y, taps_x)
    }
    fn block_mean(
        src: &Planar<u8>,
        out_h: usize,
        out_w: usize,
        sy: usize,
        sx: usize,
    ) -> Planar<u8> {
        let scale = 1.0f32 / (sx * sy) as f32;
        block_sums(
            src,
            out_h,
            out_w,
            sy,
            sx,
            0u32,
            |a, v| a + v as u32,
            |sum| {
                if (sx, sy) == (2, 2) {
                    ((sum + 2) >> 2) as u8
                } else {
                    (sum as f32 * scale).round_ties_even().clamp(0.0, 255.0) as u8
                }
            },
        )
    }
}

impl AreaSample for f64 {
    type Acc = f64;
    fn widen(self) -> f64 {
        self
    }
    fn store(acc: f64) -> f64 {
        acc
    }
    fn linear(src: &Planar<f64>, taps_y: &[LinearTap], taps_x: &[LinearTap]) -> Planar<f64> {
        linear_float(src, taps_y, taps_x)
    }
    fn block_mean(
        src: &Planar<f64>,
        out_h: usize,
        out_w: usize,
        sy: usize,
        sx: usize,
    ) -> Planar<f64> {
        let scale = (1.0f32 / (sx * sy) as f32) as f64;
        block_sums(
            src,
            out_h,
            out_w,
            sy,
            sx,
            0.0f64,
            |a, v| a + v,
            |sum| sum * scale,
        )
    }
}

/// `cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_AREA)`.
pub fn cv2_area<T: AreaSample>(src: &Planar<T>, out_h: usize, out_w: usize) -> Planar<T> {
    assert!(src.height > 0 && src.width > 0 && out_h > 0 && out_w > 0);
    if (out_h, out_w) == (src.height, src.width) {
        return src.clone();
    }
    let inv_scale_x = out_w as f64 / src.width as f64;
    let inv_scale_y = out_h as f64 / src.height as f64;
    let (scale_x, scale_y) = (1.0 / inv_scale_x, 1.0 / inv_scale_y);
    if scale_x >= 1.0 && scale_y >= 1.0 {
        let (ix, iy) = (scale_x.round_ties_even(), scale_y.round_ties_even());
        if (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON {
            return T::block_mean(src, out_h, out_w, iy as usize, ix as usize);
        }
        let xtab = area_table(src.width, out_w, scale_x);
        let ytab = area_table(src.height, out_h, scale_y);
        return area_average(src, out_h, out_w, &ytab, &xtab);
    }
    let taps_x = linear_taps(src.width, out_w, scale_x, inv_scale_x);
    let taps_y = linear_taps(src.height, out_h, scale_y, inv_scale_y);
    T::linear(src, &taps_y, &taps_x)
}

/// Sums each `sy × sx` block (rows outer, as OpenCV's offset table) and maps the sum to a sample.
#[allow(clippy::too_many_arguments)]
fn block_sums<T: Copy + Default, A: Copy>(
    src: &Planar<T>,
    out_h: usize,
    out_w: usize,
    sy: usize,
    sx: usize,
    zero: A,
    add: impl Fn(A, T) -> A,
    finish: impl Fn(A) -> T,
) -> Planar<T> {
    let cn = src.channels;
    let mut out = Planar::zeros(out_h, out_w, cn);
    for y in 0..out_h {
        for x in 0..out_w {
            for c in 0..cn {
                let mut sum = zero;
                for dy in 0..sy {
                    for dx in 0..sx {
                        sum = add(sum, src.at(y * sy + dy, x * sx + dx, c));
                    }
                }
                out.data[(y * out_w + x) * cn + c] = finish(sum);
            }
        }
    }
    out
}

/// One term of an area average: destination index, source index, weight (OpenCV's
/// `DecimateAlpha`, whose weight is a float).
#[derive(Clone, Copy, Debug, PartialEq)]
struct AreaTerm {
    dst: usize,
    src: usize,
    alpha: f32,
}

/// OpenCV's `computeResizeAreaTab`: the source cells each destination cell covers, and how much.
fn area_table(src_size: usize, dst_size: usize, scale: f64) -> Vec<AreaTerm> {
    let mut tab = Vec::with_capacity(src_size * 2);
    let ssize = src_size as f64;
    for dx in 0..dst_size {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell_width = scale.min(ssize - fsx1);
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(src_size as i64 - 1);
        let sx1 = (fsx1.ceil() as i64).min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(AreaTerm {
                dst: dx,
                src: (sx1 - 1) as usize,
                alpha: ((sx1 as f64 - fsx1) / cell_width) as f32,
            });
        }
        for sx in sx1..sx2 {
            tab.push(AreaTerm {
                dst: dx,
                src: sx as usize,
                alpha: (1.0 / cell_width) as f32,
            });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(AreaTerm {
                dst: dx,
                src: sx2 as usize,
                alpha: ((fsx2 - sx2 as f64).min(1.0).min(cell_width) / cell_width) as f32,
            });
        }
    }
    tab
}

/// OpenCV's `ResizeArea_Invoker`: per source row, a weighted horizontal sum into `buf`; rows of
/// the same destination row summed into `sum` with their vertical weight, in the same order.
fn area_average<T: AreaSample>(
    src: &Planar<T>,
    out_h: usize,
    out_w: usize,
    ytab: &[AreaTerm],
    xtab: &[AreaTerm],
) -> Planar<T> {
    let cn = src.channels;
    let row_len = out_w * cn;
    let mut out = Planar::zeros(out_h, out_w, cn);
    let mut buf = vec![T::Acc::default(); row_len];
    let mut sum = vec![T::Acc::default(); row_len];
    let Some(first) = ytab.first() else {
        return out;
    };
    let mut prev_dy = first.dst;
    for term in ytab {
        let beta: T::Acc = term.alpha.into();
        let row = &src.data[term.src * src.width * cn..(term.src + 1) * src.width * cn];
        buf.iter_mut().for_each(|b| *b = T::Acc::default());
        for x in xtab {
            let alpha: T::Acc = x.alpha.into();
            for c in 0..cn {
                let d = x.dst * cn + c;
                buf[d] = buf[d] + row[x.src * cn + c].widen() * alpha;
            }
        }
        if term.dst != prev_dy {
            let dst = &mut out.data[prev_dy * row_len..(prev_dy + 1) * row_len];
            for i in 0..row_len {
                dst[i] = T::store(sum[i]);
                sum[i] = beta * buf[i];
            }
            prev_dy = term.dst;
        } else {
            for i in 0..row_len {
                sum[i] = sum[i] + beta * buf[i];
            }
        }
    }
    let dst = &mut out.data[prev_dy * row_len..(prev_dy + 1) * row_len];
    for i in 0..row_len {
        dst[i] = T::store(sum[i]);
    }
    out
}

/// One destination index of OpenCV's area-mode bilinear: the left source index, the weight of
/// the right neighbour, and whether the right neighbour exists (past `xmax` OpenCV copies the
/// left sample alone).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearTap {
    src: usize,
    fx: f32,
    two_taps: bool,
}

/// The x (or y) offsets and weights `resize` computes for `INTER_AREA` when not shrinking.
fn linear_taps(src_size: usize, dst_size: usize, scale: f64, inv_scale: f64) -> Vec<LinearTap> {
    (0..dst_size)
        .map(|dx| {
            let mut sx = (dx as f64 * scale).floor() as i64;
            let f = ((dx + 1) as f64 - (sx + 1) as f64 * inv_scale) as f32;
            let mut fx = if f <= 0.0 { 0.0 } else { f - f.floor() };
            if sx < 0 {
                (fx, sx) = (0.0, 0);
            }
            let two_taps = sx + 1 < src_size as i64;
            if sx >= src_size as i64 - 1 {
                (fx, sx) = (0.0, src_size as i64 - 1);
            }
            LinearTap {
                src: sx as usize,
                fx,
                two_taps,
            }
        })
        .collect()
}

/// The float path (`HResizeLinear` / `VResizeLinear` with float coefficients).
fn linear_float(src: &Planar<f64>, taps_y: &[LinearTap], taps_x: &[LinearTap]) -> Planar<f64> {
    let cn = src.channels;
    let out_w = taps_x.len();
    let horizontal = |y: usize| -> Vec<f64> {
        let mut row = vec![0.0; out_w * cn];
        for (dx, t) in taps_x.iter().enumerate() {
            for c in 0..cn {
                let s0 = src.at(y, t.src, c);
                row[dx * cn + c] = if t.two_taps {
                    s0 * (1.0 - t.fx) as f64 + src.at(y, t.src + 1, c) * t.fx as f64
                } else {
                    s0
                };
            }
        }
        row
    };
    let mut out = Planar::zeros(taps_y.len(), out_w, cn);
    for (dy, t) in taps_y.iter().enumerate() {
        let r0 = horizontal(t.src);
        let r1 = horizontal((t.src + 1).min(src.height - 1));
        let (b0, b1) = (1.0 - t.fx, t.fx);
        for i in 0..out_w * cn {
            out.data[dy * out_w * cn + i] = r0[i] * b0 as f64 + r1[i] * b1 as f64;
        }
    }
    out
}

/// The uint8 path: 11-bit coefficients, `((((b0>>4)·β0)>>16) + (((b1>>4)·β1)>>16) + 2) >> 2`.
fn linear_fixed_point(src: &Planar<u8>, taps_y: &[LinearTap], taps_x: &[LinearTap]) -> Planar<u8> {
    const SCALE: f32 = 2048.0;
    let coef = |fx: f32| -> (i32, i32) {
        (
            ((1.0 - fx) * SCALE).round_ties_even() as i32,
            (fx * SCALE).round_ties_even() as i32,
        )
    };
    let cn = src.channels;
    let out_w = taps_x.len();
    let horizontal = |y: usize| -> Vec<i32> {
        let mut row = vec![0; out_w * cn];
        for (dx, t) in taps_x.iter().enumerate() {
            let (a0, a1) = coef(t.fx);
            for c in 0..cn {
                let s0 = src.at(y, t.src, c) as i32;
                row[dx * cn + c] = if t.two_taps {
                    s0 * a0 + src.at(y, t.src + 1, c) as i32 * a1
                } else {
                    s0 * SCALE as i32
                };
            }
        }
        row
    };
    let mut out = Planar::zeros(taps_y.len(), out_w, cn);
    for (dy, t) in taps_y.iter().enumerate() {
        let r0 = horizontal(t.src);
        let r1 = horizontal((t.src + 1).min(src.height - 1));
        let (b0, b1) = coef(t.fx);
        for i in 0..out_w * cn {
            let v = ((((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16) + 2) >> 2;
            out.data[dy * out_w * cn + i] = v.clamp(0, 255) as u8;
        }
    }
    out
}

/// Pillow's fixed-point precision for 8-bit images (`PRECISION_BITS` in Resample.c).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` for the bilinear (triangle) filter, normalised to fixed point:
/// per output index the first source index and the integer weights.
fn pil_coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1.0
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let scaled = w * (1u32 << PRECISION_BITS) as f64;
                    if w < 0.0 {
                        (-0.5 + scaled) as i32
                    } else {
                        (0.5 + scaled) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn pil_clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `PIL.Image.fromarray(src).resize((out_w, out_h), Image.BILINEAR)` for uint8 images.
pub fn pil_bilinear(src: &Planar<u8>, out_h: usize, out_w: usize) -> Planar<u8> {
    assert!(src.height > 0 && src.width > 0 && out_h > 0 && out_w > 0);
    let cn = src.channels;
    let horizontal = if out_w != src.width {
        let coeffs = pil_coefficients(src.width, out_w);
        let mut tmp = Planar::zeros(src.height, out_w, cn);
        for y in 0..src.height {
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..cn {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, w) in k.iter().enumerate() {
                        acc += src.at(y, xmin + i, c) as i64 * *w as i64;
                    }
                    tmp.data[(y * out_w + xx) * cn + c] = pil_clip8(acc);
                }
            }
        }
        tmp
    } else {
        src.clone()
    };
    if out_h == src.height {
        return horizontal;
    }
    let coeffs = pil_coefficients(src.height, out_h);
    let mut out = Planar::zeros(out_h, out_w, cn);
    for (yy, (ymin, k)) in coeffs.iter().enumerate() {
        for x in 0..out_w {
            for c in 0..cn {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (i, w) in k.iter().enumerate() {
                    acc += horizontal.at(ymin + i, x, c) as i64 * *w as i64;
                }
                out.data[(yy * out_w + x) * cn + c] = pil_clip8(acc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_table_weights_of_each_destination_cell_sum_to_one() {
        for (src, dst) in [(10, 3), (250, 150), (49, 24), (7, 7)] {
            let scale = 1.0 / (dst as f64 / src as f64);
            let tab = area_table(src, dst, scale);
            for d in 0..dst {
                let s: f32 = tab.iter().filter(|t| t.dst == d).map(|t| t.alpha).sum();
                assert!((s - 1.0).abs() < 1e-5, "{src}->{dst} cell {d}: {s}");
            }
        }
    }

    #[test]
    fn halving_by_area_is_the_block_mean() {
        let src = Planar {
            height: 2,
            width: 4,
            channels: 1,
            data: vec![0.0, 2.0, 4.0, 8.0, 2.0, 4.0, 6.0, 10.0],
        };
        let out = cv2_area(&src, 1, 2);
        assert_eq!(out.data, vec![2.0, 7.0]);
    }
}
