//! MTCNN face detection exactly as facenet's `src/align/detect_face.py` `detect_face` does it:
//! an image pyramid scored by P-Net, candidates refined by R-Net on 24-px patches and by O-Net on
//! 48-px patches, with the original's NMS, box regression, squaring and border padding, down to
//! its quirks — which are kept because parity with the published aligned sets depends on them:
//!
//! - P-Net's regression uses the box size without `+1`, R-Net's and O-Net's (`bbreg`) with it;
//! - when a pyramid level has exactly one candidate, `generateBoundingBox` reads its regression
//!   from the mirrored column (`np.flipud` on the transposed map);
//! - landmarks are placed in the O-Net input box *before* that box is regressed;
//! - O-Net's boxes are truncated to integers, score included, before the patches are cut.
//!
//! The array work is float64 like numpy; the nets run in float32 through tch, batched: one P-Net
//! call per pyramid level, one R-Net and one O-Net call per image over all its candidates.
//! NMS ties (equal scores) are broken towards the later candidate, which is what numpy's
//! `argsort` does for the small arrays where ties occur (its insertion sort is stable).

use tch::{Device, Kind, Tensor};

use super::resize::{cv2_area, Planar};
use crate::models::mtcnn::Mtcnn;

/// `detect_face`'s knobs: `minsize`, `threshold`, `factor` (facenet: 20, [0.6, 0.7, 0.7], 0.709).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectParams {
    pub min_size: f64,
    pub thresholds: [f64; 3],
    pub factor: f64,
}

impl Default for DetectParams {
    fn default() -> Self {
        DetectParams {
            min_size: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            factor: 0.709,
        }
    }
}

/// One detected face: the box `[x1, y1, x2, y2]` in pixels (floats, as `detect_face` returns
/// them), O-Net's face probability, and the five landmarks `(x, y)` (eyes, nose, mouth corners).
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    pub bbox: [f64; 4],
    pub score: f64,
    pub landmarks: [(f64, f64); 5],
}

/// A candidate box during the cascade: `[x1, y1, x2, y2]`, score, and the regression offsets the
/// net proposed for it (`dx1, dy1, dx2, dy2`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub bbox: [f64; 4],
    pub score: f64,
    pub reg: [f64; 4],
}

/// NMS overlap measure: intersection over union, or over the smaller box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    Union,
    Min,
}

/// The pyramid's scales: `12/minsize · factor^k` while the scaled shorter side is ≥ 12.
pub fn pyramid_scales(height: usize, width: usize, min_size: f64, factor: f64) -> Vec<f64> {
    let m = 12.0 / min_size;
    let mut minl = height.min(width) as f64 * m;
    let mut scales = Vec::new();
    let mut count = 0;
    while minl >= 12.0 {
        scales.push(m * factor.powf(count as f64));
        minl *= factor;
        count += 1;
    }
    scales
}

/// `generateBoundingBox`: every P-Net cell (row `iy`, column `ix` of the `rows × cols` maps)
/// whose face probability is ≥ `threshold` becomes the 12-px window at stride 2 mapped back
/// through `scale`. `prob[iy * cols + ix]`; `reg[k * rows * cols + iy * cols + ix]`, k = 0..4.
/// Candidates come out in the original's order (column-major).
pub fn generate_bounding_boxes(
    prob: &[f32],
    reg: &[f32],
    rows: usize,
    cols: usize,
    scale: f64,
    threshold: f64,
) -> Vec<Candidate> {
    const STRIDE: f64 = 2.0;
    const CELL: f64 = 12.0;
    let threshold = threshold as f32; // numpy compares the float32 map with a float32 scalar
    let mut hits = Vec::new();
    for ix in 0..cols {
        for iy in 0..rows {
            if prob[iy * cols + ix] >= threshold {
                hits.push((ix, iy));
            }
        }
    }
    // The original's quirk: with a single hit it reads the regression from column cols-1-ix.
    let mirror = hits.len() == 1;
    hits.iter()
        .map(|&(ix, iy)| {
            let rx = if mirror { cols - 1 - ix } else { ix };
            let r = |k: usize| reg[k * rows * cols + iy * cols + rx] as f64;
            let (bx, by) = (ix as f64, iy as f64);
            Candidate {
                bbox: [
                    ((STRIDE * bx + 1.0) / scale).trunc(),
                    ((STRIDE * by + 1.0) / scale).trunc(),
                    ((STRIDE * bx + CELL) / scale).trunc(),
                    ((STRIDE * by + CELL) / scale).trunc(),
                ],
                score: prob[iy * cols + ix] as f64,
                reg: [r(0), r(1), r(2), r(3)],
            }
        })
        .collect()
}

/// `nms`: indices of the kept candidates, best first. Areas and intersections count pixels
/// inclusively (`+1`); a candidate is dropped when its overlap with a kept one exceeds
/// `threshold`.
pub fn nms(boxes: &[Candidate], threshold: f64, method: Overlap) -> Vec<usize> {
    let area = |b: &[f64; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    // Ascending by score, ties in input order; the last one is taken first.
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[a].score.total_cmp(&boxes[b].score));
    let mut pick = Vec::new();
    while let Some(i) = order.pop() {
        pick.push(i);
        let bi = &boxes[i].bbox;
        order.retain(|&j| {
            let bj = &boxes[j].bbox;
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + 1.0).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + 1.0).max(0.0);
            let inter = w * h;
            let o = match method {
                Overlap::Min => inter / area(bi).min(area(bj)),
                Overlap::Union => inter / (area(bi) + area(bj) - inter),
            };
            o <= threshold
        });
    }
    pick
}

/// `bbreg`: moves each edge by its offset times the box's inclusive width/height.
pub fn bbreg(c: &mut Candidate) {
    let [x1, y1, x2, y2] = c.bbox;
    let w = x2 - x1 + 1.0;
    let h = y2 - y1 + 1.0;
    c.bbox = [
        x1 + c.reg[0] * w,
        y1 + c.reg[1] * h,
        x2 + c.reg[2] * w,
        y2 + c.reg[3] * h,
    ];
}

/// `rerec`: the square with side max(w, h) on the same centre (sizes without `+1`).
pub fn rerec(b: &mut [f64; 4]) {
    let h = b[3] - b[1];
    let w = b[2] - b[0];
    let l = w.max(h);
    b[0] = b[0] + w * 0.5 - l * 0.5;
    b[1] = b[1] + h * 0.5 - l * 0.5;
    b[2] = b[0] + l;
    b[3] = b[1] + l;
}

/// Where a (1-based, inclusive) box's pixels come from and go to: `pad`'s
/// `dy, edy, dx, edx, y, ey, x, ex, tmpw, tmph`. The patch is `tmph × tmpw`; patch rows
/// `dy-1 .. edy` receive image rows `y-1 .. ey`, clipped to the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadPlan {
    pub dy: i64,
    pub edy: i64,
    pub dx: i64,
    pub edx: i64,
    pub y: i64,
    pub ey: i64,
    pub x: i64,
    pub ex: i64,
    pub tmpw: i64,
    pub tmph: i64,
}

/// `pad(total_boxes, w, h)` for one box.
pub fn pad(b: &[f64; 4], width: usize, height: usize) -> PadPlan {
    let (w, h) = (width as i64, height as i64);
    let tmpw = (b[2] - b[0] + 1.0) as i64;
    let tmph = (b[3] - b[1] + 1.0) as i64;
    let mut p = PadPlan {
        dy: 1,
        edy: tmph,
        dx: 1,
        edx: tmpw,
        x: b[0] as i64,
        y: b[1] as i64,
        ex: b[2] as i64,
        ey: b[3] as i64,
        tmpw,
        tmph,
    };
    if p.ex > w {
        p.edx = -p.ex + w + tmpw;
        p.ex = w;
    }
    if p.ey > h {
        p.edy = -p.ey + h + tmph;
        p.ey = h;
    }
    if p.x < 1 {
        p.dx = 2 - p.x;
        p.x = 1;
    }
    if p.y < 1 {
        p.dy = 2 - p.y;
        p.y = 1;
    }
    p
}

/// The zero-padded `tmph × tmpw` float64 patch of `pad`'s plan.
fn cut_patch(img: &Planar<u8>, p: &PadPlan) -> Planar<f64> {
    let mut tmp = Planar::zeros(p.tmph.max(0) as usize, p.tmpw.max(0) as usize, 3);
    let rows = (p.edy - p.dy + 1).min(p.ey - p.y + 1);
    let cols = (p.edx - p.dx + 1).min(p.ex - p.x + 1);
    for r in 0..rows.max(0) {
        let (ty, iy) = (p.dy - 1 + r, p.y - 1 + r);
        if ty < 0 || ty >= p.tmph || iy < 0 || iy >= img.height as i64 {
            continue;
        }
        for c in 0..cols.max(0) {
            let (tx, ix) = (p.dx - 1 + c, p.x - 1 + c);
            if tx < 0 || tx >= p.tmpw || ix < 0 || ix >= img.width as i64 {
                continue;
            }
            for ch in 0..3 {
                tmp.data[((ty * p.tmpw + tx) * 3) as usize + ch] =
                    img.at(iy as usize, ix as usize, ch) as f64;
            }
        }
    }
    tmp
}

/// `(v − 127.5) · 0.0078125` of an HWC image as an upright `[3, H, W]` float32 block.
fn normalised_chw<T: Copy + Default + Into<f64>>(img: &Planar<T>) -> Vec<f32> {
    let (h, w) = (img.height, img.width);
    let mut out = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out[c * h * w + y * w + x] = ((img.at(y, x, c).into() - 127.5) * 0.0078125) as f32;
            }
        }
    }
    out
}

/// The patches of `boxes`, resized to `size`, as one `[N, 3, size, size]` batch.
fn patch_batch(img: &Planar<u8>, boxes: &[Candidate], size: usize, device: Device) -> Tensor {
    let mut data = Vec::with_capacity(boxes.len() * 3 * size * size);
    for b in boxes {
        let plan = pad(&b.bbox, img.width, img.height);
        let tmp = cut_patch(img, &plan);
        if tmp.height == 0 || tmp.width == 0 {
            data.extend(std::iter::repeat_n(-127.5f32 * 0.0078125, 3 * size * size));
            continue;
        }
        data.extend(normalised_chw(&cv2_area(&tmp, size, size)));
    }
    Tensor::from_slice(&data)
        .view([boxes.len() as i64, 3, size as i64, size as i64])
        .to_device(device)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(
        t.to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .flatten(0, -1),
    )
    .unwrap_or_default()
}

/// Keeps `candidates[pick]` in `pick`'s order.
fn select(candidates: &[Candidate], pick: &[usize]) -> Vec<Candidate> {
    pick.iter().map(|&i| candidates[i]).collect()
}

/// `detect_face(img, minsize, pnet, rnet, onet, threshold, factor)` on an RGB uint8 image.
pub fn detect_faces(
    nets: &Mtcnn,
    img: &Planar<u8>,
    params: &DetectParams,
    device: Device,
) -> Vec<Face> {
    tch::no_grad(|| detect_inner(nets, img, params, device))
}

fn detect_inner(nets: &Mtcnn, img: &Planar<u8>, p: &DetectParams, device: Device) -> Vec<Face> {
    let (h, w) = (img.height, img.width);
    // Stage 1: P-Net over the pyramid.
    let mut total: Vec<Candidate> = Vec::new();
    for scale in pyramid_scales(h, w, p.min_size, p.factor) {
        let hs = (h as f64 * scale).ceil() as usize;
        let ws = (w as f64 * scale).ceil() as usize;
        let level = cv2_area(img, hs, ws);
        let input = Tensor::from_slice(&normalised_chw(&level))
            .view([1, 3, hs as i64, ws as i64])
            .to_device(device);
        let (reg, prob) = nets.pnet.forward(&input);
        let (rows, cols) = (prob.size()[2] as usize, prob.size()[3] as usize);
        let face_prob = to_vec(&prob.select(1, 1));
        let boxes = generate_bounding_boxes(
            &face_prob,
            &to_vec(&reg),
            rows,
            cols,
            scale,
            p.thresholds[0],
        );
        let pick = nms(&boxes, 0.5, Overlap::Union);
        total.extend(select(&boxes, &pick));
    }
    if total.is_empty() {
        return Vec::new();
    }
    let pick = nms(&total, 0.7, Overlap::Union);
    let mut total = select(&total, &pick);
    for c in &mut total {
        let [x1, y1, x2, y2] = c.bbox;
        let (regw, regh) = (x2 - x1, y2 - y1);
        c.bbox = [
            x1 + c.reg[0] * regw,
            y1 + c.reg[1] * regh,
            x2 + c.reg[2] * regw,
            y2 + c.reg[3] * regh,
        ];
        rerec(&mut c.bbox);
        c.bbox.iter_mut().for_each(|v| *v = v.trunc());
    }

    // Stage 2: R-Net on 24×24 patches.
    let (reg, prob) = nets.rnet.forward(&patch_batch(img, &total, 24, device));
    let (reg, prob) = (to_vec(&reg), to_vec(&prob));
    let passed: Vec<Candidate> = total
        .iter()
        .enumerate()
        .filter(|&(k, _)| prob[k * 2 + 1] > p.thresholds[1] as f32)
        .map(|(k, c)| Candidate {
            bbox: c.bbox,
            score: prob[k * 2 + 1] as f64,
            reg: std::array::from_fn(|j| reg[k * 4 + j] as f64),
        })
        .collect();
    if passed.is_empty() {
        return Vec::new();
    }
    let pick = nms(&passed, 0.7, Overlap::Union);
    let mut total = select(&passed, &pick);
    for c in &mut total {
        bbreg(c);
        rerec(&mut c.bbox);
        // O-Net's input boxes are `np.fix(total_boxes).astype(np.int32)`.
        c.bbox.iter_mut().for_each(|v| *v = v.trunc());
    }

    // Stage 3: O-Net on 48×48 patches, with landmarks.
    let (reg, points, prob) = nets.onet.forward(&patch_batch(img, &total, 48, device));
    let (reg, points, prob) = (to_vec(&reg), to_vec(&points), to_vec(&prob));
    let mut candidates = Vec::new();
    let mut landmarks = Vec::new();
    for (k, c) in total.iter().enumerate() {
        let score = prob[k * 2 + 1];
        if score <= p.thresholds[2] as f32 {
            continue;
        }
        let [x1, y1, x2, y2] = c.bbox;
        let (bw, bh) = (x2 - x1 + 1.0, y2 - y1 + 1.0);
        // Stored back into numpy's float32 `points` array.
        let place = |v: f32, size: f64, origin: f64| (size * v as f64 + origin - 1.0) as f32 as f64;
        let marks: [(f64, f64); 5] = std::array::from_fn(|j| {
            (
                place(points[k * 10 + j], bw, x1),
                place(points[k * 10 + 5 + j], bh, y1),
            )
        });
        let mut cand = Candidate {
            bbox: c.bbox,
            score: score as f64,
            reg: std::array::from_fn(|j| reg[k * 4 + j] as f64),
        };
        bbreg(&mut cand);
        candidates.push(cand);
        landmarks.push(marks);
    }
    nms(&candidates, 0.7, Overlap::Min)
        .into_iter()
        .map(|i| Face {
            bbox: candidates[i].bbox,
            score: candidates[i].score,
            landmarks: landmarks[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(bbox: [f64; 4], score: f64) -> Candidate {
        Candidate {
            bbox,
            score,
            reg: [0.0; 4],
        }
    }

    #[test]
    fn pyramid_scales_follow_minsize_and_factor() {
        // 100 px shorter side, minsize 20: 60, 42.54, 30.16, 21.39, 15.16 ≥ 12, then 10.75 stops.
        let s = pyramid_scales(100, 150, 20.0, 0.709);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0], 0.6);
        assert!((s[1] - 0.6 * 0.709).abs() < 1e-15);
        assert!((s[4] - 0.6 * 0.709f64.powi(4)).abs() < 1e-15);
        // A 19-px image at minsize 20 has 11.4 px < 12 at the first scale: no level at all.
        assert!(pyramid_scales(19, 400, 20.0, 0.709).is_empty());
        // A smaller minsize enlarges the first level.
        assert_eq!(pyramid_scales(40, 40, 10.0, 0.709)[0], 1.2);
    }

    #[test]
    fn boxes_are_12px_windows_at_stride_2_in_column_major_order() {
        // 2 rows × 3 cols; hits at (iy 0, ix 2) and (iy 1, ix 0).
        let prob = [0.1, 0.2, 0.9, 0.95, 0.3, 0.1];
        let reg: Vec<f32> = (0..24).map(|v| v as f32 / 100.0).collect();
        let b = generate_bounding_boxes(&prob, &reg, 2, 3, 0.5, 0.6);
        assert_eq!(b.len(), 2);
        // Column 0 first: (ix 0, iy 1) → x1 = fix(1/0.5) = 2, y1 = fix(3/0.5) = 6, x2 = 24, y2 = 28.
        assert_eq!(b[0].bbox, [2.0, 6.0, 24.0, 28.0]);
        assert_eq!(b[0].score, 0.95f32 as f64);
        assert_eq!(b[0].reg[0], reg[3] as f64);
        assert_eq!(b[0].reg[3], reg[18 + 3] as f64);
        assert_eq!(b[1].bbox, [10.0, 2.0, 32.0, 24.0]);
        // A threshold equal to a probability keeps it (>=).
        assert_eq!(
            generate_bounding_boxes(&prob, &reg, 2, 3, 0.5, 0.9f32 as f64).len(),
            2
        );
    }

    #[test]
    fn a_single_hit_reads_the_mirrored_regression_column_as_the_original() {
        let prob = [0.9, 0.1, 0.1, 0.1, 0.1, 0.1];
        let reg: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let b = generate_bounding_boxes(&prob, &reg, 2, 3, 1.0, 0.6);
        assert_eq!(b.len(), 1);
        // Hit at ix 0, iy 0: regression from ix = 3-1-0 = 2.
        assert_eq!(b[0].reg, [2.0, 8.0, 14.0, 20.0]);
    }

    #[test]
    fn nms_keeps_the_best_and_breaks_ties_towards_the_later_box() {
        let boxes = [
            cand([0.0, 0.0, 9.0, 9.0], 0.8),
            cand([1.0, 1.0, 10.0, 10.0], 0.8),
            cand([50.0, 50.0, 59.0, 59.0], 0.7),
        ];
        assert_eq!(nms(&boxes, 0.5, Overlap::Union), vec![1, 2]);
        // Overlap exactly at the threshold is kept (<=): two 10×10 boxes sharing 5 columns have
        // IoU 50/150 = 1/3 and Min-overlap 1/2.
        let half = [
            cand([0.0, 0.0, 9.0, 9.0], 0.9),
            cand([5.0, 0.0, 14.0, 9.0], 0.1),
        ];
        assert_eq!(nms(&half, 0.5, Overlap::Min), vec![0, 1]);
        assert_eq!(nms(&half, 0.49, Overlap::Min), vec![0]);
        assert_eq!(nms(&half, 0.3, Overlap::Union), vec![0]);
        assert_eq!(nms(&half, 1.0 / 3.0, Overlap::Union), vec![0, 1]);
        assert!(nms(&[], 0.5, Overlap::Union).is_empty());
    }

    #[test]
    fn rerec_squares_on_the_centre_and_bbreg_uses_inclusive_sizes() {
        let mut b = [10.0, 20.0, 30.0, 60.0];
        rerec(&mut b);
        assert_eq!(b, [0.0, 20.0, 40.0, 60.0]);
        let mut c = Candidate {
            bbox: [0.0, 0.0, 9.0, 19.0],
            score: 1.0,
            reg: [0.1, -0.1, 0.2, 0.5],
        };
        bbreg(&mut c);
        assert_eq!(c.bbox, [1.0, -2.0, 11.0, 29.0]);
    }

    #[test]
    fn pad_clips_boxes_at_every_border() {
        // A 10×10 box hanging 3 px over the left/top and 4 px over the right/bottom of 8×6.
        let p = pad(&[-3.0, -3.0, 6.0, 6.0], 8, 5);
        assert_eq!((p.tmpw, p.tmph), (10, 10));
        assert_eq!((p.x, p.dx, p.ex, p.edx), (1, 5, 6, 10));
        assert_eq!((p.y, p.dy, p.ey, p.edy), (1, 5, 5, 9));
        // Inside: unchanged.
        let q = pad(&[2.0, 3.0, 5.0, 6.0], 8, 8);
        assert_eq!((q.dx, q.edx, q.x, q.ex, q.dy, q.edy), (1, 4, 2, 5, 1, 4));
        let img = Planar {
            height: 5,
            width: 8,
            channels: 3,
            data: (0..120).map(|v| v as u8).collect(),
        };
        let patch = cut_patch(&img, &p);
        // Patch (row 4, col 4) = image (row 0, col 0); the pad stays 0.
        assert_eq!(patch.at(4, 4, 0), 0.0);
        assert_eq!(patch.at(4, 5, 1), img.at(0, 1, 1) as f64);
        assert_eq!(patch.at(8, 9, 2), img.at(4, 5, 2) as f64);
        assert_eq!(patch.at(9, 9, 0), 0.0);
        assert_eq!(patch.at(0, 0, 0), 0.0);
    }
}
