//! vaepipe's face data, with no knowledge of torch or of the pipeline engine.
//!
//! Five parts, one file each:
//! - [`synth`] (with its renderer in [`face`]): the deterministic synthetic face generator that
//!   writes a CelebA-layout set and a facenet-aligned CASIA-layout set, the embedded default data.
//! - [`celeba`] and [`casia`]: loaders for the real layouts, strict about malformed files.
//! - [`decode`]: the one header-first, size-limited image decoder every entry point uses.
//! - [`align_check`]: decodes every image of a set in parallel and reports the bad ones.
//! - [`imageops`] and [`batches`]: TF-compatible crop / resize / normalisation and the prefetching
//!   batch pipeline that `train-vae` and `encode` consume.
//!
//! The engine stage kinds (`synth-faces`, `align-check`) and the conversion of [`FaceBatch`] into
//! tensors live in the main crate; this crate only exposes library calls.

pub mod align_check;
pub mod batches;
pub mod casia;
pub mod celeba;
pub mod decode;
mod error;
pub mod face;
pub mod fixtures;
pub mod imageops;
pub mod synth;
pub mod wild;

pub use align_check::{check, Expectation, FileSet, OnBad, Report};
pub use batches::{BatchConfig, BatchLoader, FaceBatch, Position, Resize};
pub use casia::IdentityFolders;
pub use celeba::{CelebA, CelebARow, CELEBA_ATTRIBUTES, SMILING};
pub use decode::{decode_image, open_image, DecodeError, DecodeLimits, Decoded};
pub use error::{Error, Result};
pub use imageops::{crop_or_pad, resize_bilinear, Layout, Sampling, FACENET_MEAN, FACENET_STD};
pub use synth::{generate, SynthParams, SynthSummary};

/// File extensions (lower-case) that the loaders treat as images.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "gif"];

/// True when `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        .unwrap_or(false)
}
