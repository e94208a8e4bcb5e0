//! Face alignment as facenet's `src/align/align_dataset_mtcnn.py` does it: MTCNN detection
//! ([`detect`], on the nets of `crate::models::mtcnn`), then per image the face the original
//! keeps, a margin, a crop and a bilinear resize ([`crop`]), with the two resizes whose exact
//! arithmetic decides parity in [`resize`]. The `align` stage kind (`crate::stages::align`)
//! does the files; this module only computes.

pub mod crop;
pub mod detect;
pub mod resize;

pub use crop::{aligned_crop, choose_face, CropBox};
pub use detect::{detect_faces, DetectParams, Face};
pub use resize::Planar;

#[cfg(test)]
mod parity_tests;
