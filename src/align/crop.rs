//! What `align_dataset_mtcnn.py` does with `detect_face`'s boxes: keep one face (the largest
//! box, penalised by twice its squared distance from the image centre) unless every face is
//! wanted, grow the box by `margin/2` on each side clamped to the image, truncate to integers,
//! crop, and resize to `image_size × image_size` with `scipy.misc.imresize(..., 'bilinear')`
//! (Pillow's bilinear, [`super::resize::pil_bilinear`]).

use super::detect::Face;
use super::resize::{pil_bilinear, Planar};

/// The crop rectangle `[x1, y1, x2, y2)` in pixels, as written to `bounding_boxes.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub x1: u32,
    pub y1: u32,
    pub x2: u32,
    pub y2: u32,
}

/// The index of the face the original keeps among several: `argmax(area − 2·offset²)`, areas
/// without `+1`, offset from `(width/2, height/2)`; the first on ties.
pub fn choose_face(faces: &[Face], width: usize, height: usize) -> Option<usize> {
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    let value = |f: &Face| {
        let [x1, y1, x2, y2] = f.bbox;
        let size = (x2 - x1) * (y2 - y1);
        let (ox, oy) = ((x1 + x2) / 2.0 - cx, (y1 + y2) / 2.0 - cy);
        size - (ox.powi(2) + oy.powi(2)) * 2.0
    };
    let mut best: Option<(usize, f64)> = None;
    for (i, f) in faces.iter().enumerate() {
        let v = value(f);
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// The margin-grown crop of `face`'s box, clamped to the image; `None` when it is empty.
pub fn crop_box(face: &Face, margin: u32, width: usize, height: usize) -> Option<CropBox> {
    let half = margin as f64 / 2.0;
    let [x1, y1, x2, y2] = face.bbox;
    // numpy assigns the float into an int32 array: truncation towards zero.
    let b = CropBox {
        x1: (x1 - half).max(0.0) as u32,
        y1: (y1 - half).max(0.0) as u32,
        x2: (x2 + half).min(width as f64).max(0.0) as u32,
        y2: (y2 + half).min(height as f64).max(0.0) as u32,
    };
    (b.x2 > b.x1 && b.y2 > b.y1).then_some(b)
}

/// The aligned face: `img[y1:y2, x1:x2]` resized to `image_size²` with Pillow's bilinear.
pub fn aligned_crop(img: &Planar<u8>, b: &CropBox, image_size: usize) -> Planar<u8> {
    let (w, h) = ((b.x2 - b.x1) as usize, (b.y2 - b.y1) as usize);
    let mut crop = Planar::zeros(h, w, img.channels);
    for y in 0..h {
        let src = ((b.y1 as usize + y) * img.width + b.x1 as usize) * img.channels;
        let dst = y * w * img.channels;
        crop.data[dst..dst + w * img.channels]
            .copy_from_slice(&img.data[src..src + w * img.channels]);
    }
    pil_bilinear(&crop, image_size, image_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f64; 4]) -> Face {
        Face {
            bbox,
            score: 0.99,
            landmarks: [(0.0, 0.0); 5],
        }
    }

    #[test]
    fn the_kept_face_trades_size_against_distance_from_the_centre() {
        // 100×100 image. A 20-px face at the centre beats a 30-px face in the corner:
        // 400 − 0 vs 900 − 2·(35² + 35²) < 0.
        let faces = [face([0.0, 0.0, 30.0, 30.0]), face([40.0, 40.0, 60.0, 60.0])];
        assert_eq!(choose_face(&faces, 100, 100), Some(1));
        // Equal value: the first wins.
        let twins = [
            face([40.0, 40.0, 60.0, 60.0]),
            face([40.0, 40.0, 60.0, 60.0]),
        ];
        assert_eq!(choose_face(&twins, 100, 100), Some(0));
        assert_eq!(choose_face(&[], 100, 100), None);
    }

    #[test]
    fn the_margin_is_split_over_both_sides_and_clamped_then_truncated() {
        let b = crop_box(&face([10.7, 30.2, 60.9, 90.5]), 44, 70, 100).unwrap();
        // 10.7 − 22 < 0 → 0; 30.2 − 22 = 8.2 → 8; 60.9 + 22 > 70 → 70; 90.5 + 22 > 100 → 100.
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (0, 8, 70, 100));
        let c = crop_box(&face([30.0, 30.0, 40.9, 40.9]), 0, 100, 100).unwrap();
        assert_eq!((c.x1, c.y1, c.x2, c.y2), (30, 30, 40, 40));
        // A box entirely outside the image crops nothing.
        assert_eq!(
            crop_box(&face([120.0, 10.0, 140.0, 30.0]), 0, 100, 100),
            None
        );
    }

    #[test]
    fn the_crop_takes_exactly_the_box_before_resizing() {
        let img = Planar {
            height: 4,
            width: 5,
            channels: 3,
            data: (0..60).map(|v| v as u8).collect(),
        };
        let b = CropBox {
            x1: 1,
            y1: 2,
            x2: 3,
            y2: 4,
        };
        let out = aligned_crop(&img, &b, 2);
        // Same size: no resampling, the pixels themselves.
        assert_eq!(out.at(0, 0, 0), img.at(2, 1, 0));
        assert_eq!(out.at(1, 1, 2), img.at(3, 2, 2));
    }
}
