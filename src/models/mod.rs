//! The networks and losses of facenet's DFC-VAE pipeline, in tch: the three VAEs of
//! facenet's `src/generative/models/` (after Hou et al., "Deep Feature Consistent Variational
//! Autoencoder", arXiv 1610.00291), the Inception-ResNet-v1 face net of
//! `src/models/inception_resnet_v1.py` that the perceptual loss reads, the losses of
//! `train_vae.py`, TF1's bilinear resize, and weight loading.
//!
//! Every variable is named after facenet's TF scope with `/` written as `.`
//! (`encoder.Conv2d_1.BatchNorm.beta`, `InceptionResnetV1.Repeat.block35_1.Conv2d_1x1.biases`),
//! so a TF checkpoint imports by name and `loss_features` uses the same names as facenet.
//! Layouts are tch's (OIHW kernels, `[out, in]` FC weights); the VAEs flatten in TF's NHWC
//! order at the FC boundary so converted checkpoints need no reordering beyond the transposes.
//!
//! Deliberately pure: no file IO except the weight loaders in [`weights`], no logging, no
//! device choice. Training loops, checkpoints and the stage glue live in `crate::stages` and
//! `crate::train`.

use tch::{nn, Tensor};

pub mod dfc_vae;
pub mod dfc_vae_resnet;
pub mod inception_resnet_v1;
pub mod layers;
pub mod loss;
pub mod mtcnn;
pub mod mutation;
pub mod preprocess;
pub mod pt_file;
pub mod resize;
pub mod softmax_head;
pub mod weights;

/// What building or running a model can fail with: everything here is a user-controlled
/// value (latent size, layer names, input size) named in the message.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("`latent_size` must be at least 1, got {0}")]
    LatentSize(i64),
    #[error("`{name}` is not an Inception-ResNet-v1 end point; valid names: `{valid}`")]
    UnknownEndPoint { name: String, valid: String },
    #[error("end point `{name}` is deeper than this net was built for (deepest built: `{deepest}`); build it with `{name}` among its features")]
    EndPointNotBuilt { name: String, deepest: String },
    #[error("the perceptual loss needs at least one face-net layer in `loss_features`")]
    NoFeatures,
    #[error("a {what} input must be {expected}, got {got:?}")]
    InputShape {
        what: &'static str,
        expected: String,
        got: Vec<i64>,
    },
    #[error(
        "a {height}×{width} input is too small for Inception-ResNet-v1 end point `{end_point}`"
    )]
    InputTooSmall {
        height: i64,
        width: i64,
        end_point: String,
    },
    #[error("originals and reconstructions differ in shape: {originals:?} vs {reconstructions:?}")]
    ShapeMismatch {
        originals: Vec<i64>,
        reconstructions: Vec<i64>,
    },
    #[error("invalid Inception-ResNet-v1 config: {0}")]
    Config(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// The three VAEs of facenet's `src/generative/models/`, by their module names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum VaeArch {
    /// `dfc_vae.py`: 4 stride-2 convs, 64 px (the published run).
    #[default]
    DfcVae,
    /// `dfc_vae_resnet.py`: the same with 3 residual units per scale, 64 px.
    DfcVaeResnet,
    /// `dfc_vae_large.py`: 5 stride-2 convs, 128 px.
    DfcVaeLarge,
}

impl VaeArch {
    pub const ALL: [VaeArch; 3] = [VaeArch::DfcVae, VaeArch::DfcVaeResnet, VaeArch::DfcVaeLarge];

    /// Side of the square images the VAE encodes and decodes (vae_base `image_size`).
    pub fn image_size(self) -> i64 {
        match self {
            VaeArch::DfcVae | VaeArch::DfcVaeResnet => 64,
            VaeArch::DfcVaeLarge => 128,
        }
    }

    /// facenet's module name (`dfc_vae`, …), as in `vae_def`.
    pub fn name(self) -> &'static str {
        match self {
            VaeArch::DfcVae => "dfc_vae",
            VaeArch::DfcVaeResnet => "dfc_vae_resnet",
            VaeArch::DfcVaeLarge => "dfc_vae_large",
        }
    }
}

impl std::fmt::Display for VaeArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A VAE to build: architecture and latent size (`--latent_var_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaeConfig {
    pub arch: VaeArch,
    pub latent_size: i64,
}

impl VaeConfig {
    /// facenet `dfc_vae` with L = 100, as in the wiki run.
    pub fn dfc_vae() -> Self {
        VaeConfig {
            arch: VaeArch::DfcVae,
            latent_size: 100,
        }
    }

    /// facenet `dfc_vae_resnet` with L = 100.
    pub fn dfc_vae_resnet() -> Self {
        VaeConfig {
            arch: VaeArch::DfcVaeResnet,
            latent_size: 100,
        }
    }

    /// facenet `dfc_vae_large` with L = 100.
    pub fn dfc_vae_large() -> Self {
        VaeConfig {
            arch: VaeArch::DfcVaeLarge,
            latent_size: 100,
        }
    }
}

/// The encoder/decoder pair every architecture provides; `train` selects batch statistics
/// (and updates the moving averages in place) versus the moving averages.
pub(crate) trait VaeNet: std::fmt::Debug + Send {
    /// `[B, 3, s, s]` → (mean `[B, L]`, log-variance `[B, L]`).
    fn encode(&self, x: &Tensor, train: bool) -> (Tensor, Tensor);
    /// `[B, L]` → `[B, 3, s, s]` (batch-normalised, no activation).
    fn decode(&self, z: &Tensor, train: bool) -> Tensor;
}

/// A DFC-VAE of any architecture, its variables under `encoder.*` and `decoder.*` of the
/// path it was built on.
#[derive(Debug)]
pub struct Vae {
    config: VaeConfig,
    net: Box<dyn VaeNet>,
}

impl Vae {
    /// Builds `arch` with latent size `latent_size` under `p`, initialised as facenet does
    /// (truncated normal σ 0.1 weights, zero biases and betas, moving mean 0, variance 1);
    /// seed with `tch::manual_seed` first for a reproducible init.
    pub fn new(p: &nn::Path, arch: VaeArch, latent_size: i64) -> Result<Vae, ModelError> {
        Vae::from_config(p, VaeConfig { arch, latent_size })
    }

    pub fn from_config(p: &nn::Path, config: VaeConfig) -> Result<Vae, ModelError> {
        if config.latent_size < 1 {
            return Err(ModelError::LatentSize(config.latent_size));
        }
        let l = config.latent_size;
        let net: Box<dyn VaeNet> = match config.arch {
            VaeArch::DfcVae => Box::new(dfc_vae::DfcVae::new(p, l)?),
            VaeArch::DfcVaeResnet => Box::new(dfc_vae_resnet::DfcVaeResnet::new(p, l)?),
            VaeArch::DfcVaeLarge => Box::new(dfc_vae::DfcVae::large(p, l)?),
        };
        Ok(Vae { config, net })
    }

    pub fn arch(&self) -> VaeArch {
        self.config.arch
    }

    pub fn latent_size(&self) -> i64 {
        self.config.latent_size
    }

    pub fn image_size(&self) -> i64 {
        self.config.arch.image_size()
    }

    /// `[B, 3, s, s]` → (mean, log-variance), each `[B, L]`. The shape is the caller's
    /// invariant (images are resized to `image_size()` first); [`Vae::f_encode`] checks it.
    pub fn encode(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        self.net.encode(x, train)
    }

    /// `[B, L]` → `[B, 3, s, s]`, in the normalised image space.
    pub fn decode(&self, z: &Tensor, train: bool) -> Tensor {
        self.net.decode(z, train)
    }

    /// [`Vae::encode`] with the input shape checked first.
    pub fn f_encode(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor), ModelError> {
        let s = self.image_size();
        let size = x.size();
        if size.len() != 4 || size[1] != 3 || size[2] != s || size[3] != s || size[0] < 1 {
            let expected = format!("[batch, 3, {s}, {s}] for {}", self.arch());
            return Err(ModelError::InputShape {
                what: "VAE encoder",
                expected,
                got: size,
            });
        }
        Ok(self.encode(x, train))
    }

    /// [`Vae::decode`] with the latent shape checked first.
    pub fn f_decode(&self, z: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let size = z.size();
        if size.len() != 2 || size[1] != self.latent_size() || size[0] < 1 {
            let expected = format!("[batch, {}]", self.latent_size());
            return Err(ModelError::InputShape {
                what: "VAE decoder",
                expected,
                got: size,
            });
        }
        Ok(self.decode(z, train))
    }
}

/// The reparameterisation trick of train_vae.py:100-102: z = mean + ε·exp(log_var/2) with
/// ε ~ N(0, 1) drawn from torch's global generator (seed it for reproducibility).
pub fn reparameterize(mean: &Tensor, log_var: &Tensor) -> Tensor {
    reparameterize_with(mean, log_var, &mean.randn_like())
}

/// z = mean + eps·exp(log_var/2) for a given ε (`[B, L]` each).
pub fn reparameterize_with(mean: &Tensor, log_var: &Tensor, eps: &Tensor) -> Tensor {
    mean + eps * (log_var * 0.5).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device, Kind};

    fn check_shapes(arch: VaeArch) {
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cpu);
        let vae = Vae::new(&vs.root(), arch, 7).unwrap();
        let s = arch.image_size();
        let x = Tensor::randn([2, 3, s, s], (Kind::Float, Device::Cpu));
        let (mean, log_var) = vae.f_encode(&x, true).unwrap();
        assert_eq!(mean.size(), [2, 7]);
        assert_eq!(log_var.size(), [2, 7]);
        let z = reparameterize(&mean, &log_var);
        let y = vae.f_decode(&z, true).unwrap();
        assert_eq!(y.size(), [2, 3, s, s]);
        let y = vae.decode(&z, false);
        assert_eq!(y.size(), [2, 3, s, s]);
    }

    #[test]
    fn dfc_vae_maps_64_px_images_to_latents_and_back() {
        check_shapes(VaeArch::DfcVae);
    }

    #[test]
    fn dfc_vae_resnet_maps_64_px_images_to_latents_and_back() {
        check_shapes(VaeArch::DfcVaeResnet);
    }

    #[test]
    fn dfc_vae_large_maps_128_px_images_to_latents_and_back() {
        check_shapes(VaeArch::DfcVaeLarge);
    }

    #[test]
    fn zero_latent_size_is_an_error_naming_the_param() {
        let vs = VarStore::new(Device::Cpu);
        let err = Vae::new(&vs.root(), VaeArch::DfcVae, 0).unwrap_err();
        assert_eq!(err.to_string(), "`latent_size` must be at least 1, got 0");
    }

    #[test]
    fn wrong_image_size_is_an_error_naming_the_expected_shape() {
        let vs = VarStore::new(Device::Cpu);
        let vae = Vae::new(&vs.root(), VaeArch::DfcVaeLarge, 4).unwrap();
        let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let err = vae.f_encode(&x, false).unwrap_err();
        assert_eq!(err.to_string(), "a VAE encoder input must be [batch, 3, 128, 128] for dfc_vae_large, got [1, 3, 64, 64]");
    }

    #[test]
    fn arch_names_are_facenet_module_names_in_serde_too() {
        for arch in VaeArch::ALL {
            assert_eq!(
                serde_json::to_string(&arch).unwrap(),
                format!("\"{}\"", arch.name())
            );
        }
        assert_eq!([64, 64, 128], VaeArch::ALL.map(VaeArch::image_size));
    }

    #[test]
    fn reparameterize_is_mean_plus_eps_times_std() {
        let mean = Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2]);
        let log_var = Tensor::from_slice(&[0.0f32, 2.0f32.ln() * 2.0]).view([1, 2]); // std 1, 2
        let eps = Tensor::from_slice(&[0.5f32, -1.5]).view([1, 2]);
        let z = reparameterize_with(&mean, &log_var, &eps);
        assert!(z.allclose(
            &Tensor::from_slice(&[1.5f32, -5.0]).view([1, 2]),
            1e-6,
            1e-6,
            false
        ));
        assert_eq!(reparameterize(&mean, &log_var).size(), [1, 2]);
    }
}
