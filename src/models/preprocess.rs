//! What happens to pixels between the batch loader and a model: the dataset normalisation,
//! the resize option between the crop and the VAE's size, what the perceptual net is fed, and
//! the NCHW → NHWC conversion PNG grids are made from.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::models::resize::Sampling;

/// Per-channel (RGB) normalisation of 0..255 pixels: (x − mean) / std. The default is the
/// constant train_vae.py hard-codes (models.md §1.6 step 5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            mean: vaepipe_facedata::imageops::FACENET_MEAN.map(f64::from),
            std: vaepipe_facedata::imageops::FACENET_STD.map(f64::from),
        }
    }
}

impl Normalization {
    fn channel(values: [f64; 3], like: &Tensor) -> Tensor {
        Tensor::from_slice(&values.map(|v| v as f32))
            .view([1, 3, 1, 1])
            .to_device(like.device())
    }

    /// Normalised NCHW → pixel units.
    pub fn to_pixels(&self, x: &Tensor) -> Tensor {
        x * Self::channel(self.std, x) + Self::channel(self.mean, x)
    }

    /// Pixel units NCHW → normalised.
    pub fn from_pixels(&self, x: &Tensor) -> Tensor {
        (x - Self::channel(self.mean, x)) / Self::channel(self.std, x)
    }

    pub fn mean_f32(&self) -> [f32; 3] {
        self.mean.map(|v| v as f32)
    }

    pub fn std_f32(&self) -> [f32; 3] {
        self.std.map(|v| v as f32)
    }
}

/// How images are resized between the 160 crop and the VAE's size (choices.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resize {
    /// TF1's `resize_images` bilinear: src = dst·in/out (the original).
    #[default]
    #[serde(rename = "tf-legacy")]
    TfLegacy,
    /// Half-pixel centres (PyTorch's `interpolate`, TF2's).
    #[serde(rename = "half-pixel")]
    HalfPixel,
}

impl Resize {
    pub fn sampling(self) -> Sampling {
        match self {
            Resize::TfLegacy => Sampling::TfLegacy,
            Resize::HalfPixel => Sampling::HalfPixel,
        }
    }
}

/// What the perceptual net is fed (choices.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerceptualInput {
    /// The VAE's dataset-normalised tensor, as train_vae.py does.
    #[default]
    Dataset,
    /// Per-image standardisation, as the 2017 facenet models were trained.
    Prewhiten,
    /// (x − 127.5)/128, as the 2018 / facenet-pytorch models were trained.
    Fixed,
}

impl PerceptualInput {
    pub fn prepare(self, normalised: &Tensor, norm: &Normalization) -> Tensor {
        match self {
            PerceptualInput::Dataset => normalised.shallow_clone(),
            PerceptualInput::Fixed => (norm.to_pixels(normalised) - 127.5) / 128.0,
            PerceptualInput::Prewhiten => {
                let x = norm.to_pixels(normalised);
                let n = x.size()[1..].iter().product::<i64>() as f64;
                let mean = x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
                let std = x
                    .std_dim(&[1i64, 2, 3][..], false, true)
                    .clamp_min(1.0 / n.sqrt());
                (x - mean) / std
            }
        }
    }
}

/// NCHW float tensor → NHWC `Vec<f32>` on the CPU (for PNG grids).
pub fn to_nhwc_vec(x: &Tensor) -> Result<Vec<f32>> {
    let nhwc = x
        .permute([0, 2, 3, 1])
        .contiguous()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float);
    Ok(Vec::<f32>::try_from(&nhwc.flatten(0, -1))?)
}
