//! facenet's `dfc_vae` (src/generative/models/dfc_vae.py:39-88) and `dfc_vae_large`
//! (dfc_vae_large.py:37-95), after Hou et al., "Deep Feature Consistent Variational
//! Autoencoder" (arXiv 1610.00291): one builder over a table of channels, read like the
//! papers' figures (models.md §1.2, §1.4).
//!
//! encoder: n× [conv 4×4/2 SAME (no bias) → BN(beta) → leaky 0.1] down to 4×4 → NHWC flatten →
//! `Fc_1` (mean) and `Fc_2` (log-variance), linear with biases.
//! decoder: `Fc_1` (linear) → reshape [4, 4, 256] NHWC → m× [nearest ×2 → conv 3×3/1 → BN →
//! activation], the last batch-normalised with no activation.
//!
//! - `dfc_vae` (64 px, the published smile run): encoder 32, 64, 128, 256 (flatten 4096);
//!   decoder 128, 64, 32, 3. With L = 100: 2,311,403 trainable elements + 1,414 moving
//!   statistics.
//! - `dfc_vae_large` (128 px): encoder 32, 64, 128, 256, 512 (flatten 8192); decoder 128, 64,
//!   32, then **3 channels at 64 px** (`Conv2d_4`, leaky) and `Conv2d_5` 3 → 3 at 128 px: the
//!   decoder squeezes to RGB before the last upsampling, as facenet's does.

use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{
    conv_bn, flatten_nhwc, unflatten_nhwc, upsample_2x, Activation, ConvBn, ConvSpec, Fc, Padding,
    WeightInit, VAE_INIT_STDDEV,
};
use super::{ModelError, VaeNet};

const INIT: WeightInit = WeightInit::TruncatedNormal(VAE_INIT_STDDEV);

/// Side of the map at both ends of the bottleneck (the encoder's last conv, the decoder's
/// reshape) and the decoder's channels there.
const BOTTOM: i64 = 4;
const DECODER_IN: i64 = 256;

/// One DFC-VAE: the output channels of each encoder conv (`Conv2d_1`, …), and of each decoder
/// conv with its activation.
struct Layout {
    encoder: &'static [i64],
    decoder: &'static [(i64, Activation)],
}

const DFC_VAE: Layout = Layout {
    encoder: &[32, 64, 128, 256],
    decoder: &[
        (128, Activation::Leaky),
        (64, Activation::Leaky),
        (32, Activation::Leaky),
        (3, Activation::None),
    ],
};

const DFC_VAE_LARGE: Layout = Layout {
    encoder: &[32, 64, 128, 256, 512],
    decoder: &[
        (128, Activation::Leaky),
        (64, Activation::Leaky),
        (32, Activation::Leaky),
        (3, Activation::Leaky),
        (3, Activation::None),
    ],
};

#[derive(Debug)]
pub struct DfcVae {
    encoder: Encoder,
    decoder: Decoder,
}

#[derive(Debug)]
struct Encoder {
    /// `Conv2d_1`, `Conv2d_2`, …: each halves the side.
    convs: Vec<ConvBn>,
    /// Channels of the last conv's 4×4 map.
    top: i64,
    fc_1: Fc,
    fc_2: Fc,
}

#[derive(Debug)]
struct Decoder {
    fc_1: Fc,
    /// `Conv2d_1`, `Conv2d_2`, …: each after a nearest ×2 upsampling.
    convs: Vec<ConvBn>,
}

impl DfcVae {
    /// facenet's `dfc_vae` (64 px); variables under `p.encoder.*` and `p.decoder.*`.
    pub fn new(p: &nn::Path, latent_size: i64) -> Result<DfcVae, ModelError> {
        DfcVae::build(p, latent_size, &DFC_VAE)
    }

    /// facenet's `dfc_vae_large` (128 px); variables under `p.encoder.*` and `p.decoder.*`.
    pub fn large(p: &nn::Path, latent_size: i64) -> Result<DfcVae, ModelError> {
        DfcVae::build(p, latent_size, &DFC_VAE_LARGE)
    }

    /// Variables in facenet's creation order (encoder convs, `Fc_1`, `Fc_2`, decoder `Fc_1`,
    /// decoder convs), so a seeded init draws the same numbers.
    fn build(p: &nn::Path, latent_size: i64, layout: &Layout) -> Result<DfcVae, ModelError> {
        if latent_size < 1 {
            return Err(ModelError::LatentSize(latent_size));
        }
        let e = p / "encoder";
        let mut convs = Vec::new();
        let mut c_in = 3;
        for (i, &c_out) in layout.encoder.iter().enumerate() {
            let spec = ConvSpec {
                c_in,
                c_out,
                kernel: (4, 4),
                stride: 2,
                padding: Padding::Same,
                activation: Activation::Leaky,
                init: INIT,
            };
            convs.push(conv_bn(&(&e / format!("Conv2d_{}", i + 1)), spec));
            c_in = c_out;
        }
        let flat = BOTTOM * BOTTOM * c_in;
        let encoder = Encoder {
            convs,
            top: c_in,
            fc_1: Fc::new(&(&e / "Fc_1"), flat, latent_size, INIT),
            fc_2: Fc::new(&(&e / "Fc_2"), flat, latent_size, INIT),
        };
        let d = p / "decoder";
        let fc_1 = Fc::new(
            &(&d / "Fc_1"),
            latent_size,
            BOTTOM * BOTTOM * DECODER_IN,
            INIT,
        );
        let mut convs = Vec::new();
        let mut c_in = DECODER_IN;
        for (i, &(c_out, activation)) in layout.decoder.iter().enumerate() {
            let spec = ConvSpec {
                c_in,
                c_out,
                kernel: (3, 3),
                stride: 1,
                padding: Padding::Same,
                activation,
                init: INIT,
            };
            convs.push(conv_bn(&(&d / format!("Conv2d_{}", i + 1)), spec));
            c_in = c_out;
        }
        let decoder = Decoder { fc_1, convs };
        Ok(DfcVae { encoder, decoder })
    }
}

impl VaeNet for DfcVae {
    fn encode(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let e = &self.encoder;
        // [B, 3, S, S] → … → [B, top, 4, 4], each conv halving the side.
        let net = e
            .convs
            .iter()
            .fold(x.shallow_clone(), |net, conv| net.apply_t(conv, train));
        let net = flatten_nhwc(&net); // [B, 16·top], index (h·4 + w)·top + c
        debug_assert_eq!(net.size()[1], BOTTOM * BOTTOM * e.top);
        (e.fc_1.forward(&net), e.fc_2.forward(&net)) // [B, L], [B, L]
    }

    fn decode(&self, z: &Tensor, train: bool) -> Tensor {
        let d = &self.decoder;
        let net = z.apply(&d.fc_1); // [B, 4096], linear
        let net = unflatten_nhwc(&net, BOTTOM, BOTTOM, DECODER_IN); // [B, 256, 4, 4]
                                                                    // Each step doubles the side; the last conv is BN with no activation.
        d.convs
            .iter()
            .fold(net, |net, conv| upsample_2x(&net).apply_t(conv, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    fn numel(t: &Tensor) -> i64 {
        t.size().iter().product()
    }

    #[test]
    fn parameter_count_with_latent_100_is_facenets() {
        let vs = VarStore::new(Device::Cpu);
        let _vae = DfcVae::new(&vs.root(), 100).unwrap();
        let trainable: i64 = vs.trainable_variables().iter().map(numel).sum();
        assert_eq!(trainable, 2_311_403);
        let moving: i64 = vs
            .variables()
            .iter()
            .filter(|(_, t)| !t.requires_grad())
            .map(|(_, t)| numel(t))
            .sum();
        assert_eq!(moving, 1_414);
    }

    #[test]
    fn variables_are_named_after_facenets_tf_scopes() {
        let vs = VarStore::new(Device::Cpu);
        let _vae = DfcVae::new(&vs.root(), 100).unwrap();
        let vars = vs.variables();
        let shape = |n: &str| {
            vars.get(n)
                .map(|t| t.size())
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(shape("encoder.Conv2d_1.weights"), [32, 3, 4, 4]);
        assert_eq!(shape("encoder.Conv2d_1.BatchNorm.beta"), [32]);
        assert_eq!(shape("encoder.Conv2d_4.BatchNorm.moving_mean"), [256]);
        assert_eq!(shape("encoder.Fc_1.weights"), [100, 4096]);
        assert_eq!(shape("encoder.Fc_2.biases"), [100]);
        assert_eq!(shape("decoder.Fc_1.weights"), [4096, 100]);
        assert_eq!(shape("decoder.Fc_1.biases"), [4096]);
        assert_eq!(shape("decoder.Conv2d_4.weights"), [3, 32, 3, 3]);
        assert_eq!(shape("decoder.Conv2d_4.BatchNorm.moving_variance"), [3]);
        // No conv has a bias, no BN has a gamma.
        assert!(!vars
            .keys()
            .any(|n| n.contains("Conv2d") && n.ends_with("biases")));
        assert!(!vars.keys().any(|n| n.contains("gamma")));
        assert_eq!(vars.len(), 4 * 4 * 2 + 3 * 2);
    }

    #[test]
    fn encoder_fc_sees_features_in_nhwc_order() {
        // Make Conv2d_4's output a known map (weights 0, beta = channel index): with
        // beta-only BN in inference mode (moving mean 0) and leaky ReLU the output at
        // (c, h, w) is c. Fc_1 then reads 4096 features; a weight row that is 1 only at
        // (h·4 + w)·256 + c must give that channel's value.
        let vs = VarStore::new(Device::Cpu);
        let vae = DfcVae::new(&vs.root(), 2).unwrap();
        let e = &vae.encoder;
        tch::no_grad(|| {
            let _ = e.convs[3].conv.weights.shallow_clone().zero_();
            e.convs[3]
                .bn
                .beta
                .shallow_clone()
                .copy_(&Tensor::arange(256, (Kind::Float, Device::Cpu)));
            let _ = e.fc_1.weights.shallow_clone().zero_();
            let _ = e.fc_1.biases.shallow_clone().zero_();
            let (h, w, c) = (2i64, 3i64, 17i64);
            let _ = e.fc_1.weights.get(0).get((h * 4 + w) * 256 + c).fill_(1.0);
            let _ = e
                .fc_1
                .weights
                .get(1)
                .get((w * 4 + h) * 256 + 200)
                .fill_(1.0);
        });
        let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (mean, _) = vae.encode(&x, false);
        assert_eq!(mean.double_value(&[0, 0]), 17.0);
        assert_eq!(mean.double_value(&[0, 1]), 200.0);
    }

    #[test]
    fn decoder_reshapes_fc_output_as_nhwc() {
        // Decoder Fc_1 output k lands at (h, w, c) with k = (h·4 + w)·256 + c: check by
        // making Fc_1 emit its index and reading the tensor the first conv receives.
        let flat = Tensor::arange(4096, (Kind::Float, Device::Cpu)).view([1, 4096]);
        let nchw = unflatten_nhwc(&flat, 4, 4, 256);
        let (h, w, c) = (1i64, 2i64, 5i64);
        assert_eq!(
            nchw.double_value(&[0, c, h, w]),
            ((h * 4 + w) * 256 + c) as f64
        );
    }

    #[test]
    fn large_encoder_flattens_8192_and_decoder_squeezes_to_rgb_at_64() {
        let vs = VarStore::new(Device::Cpu);
        let _vae = DfcVae::large(&vs.root(), 100).unwrap();
        let vars = vs.variables();
        let shape = |n: &str| {
            vars.get(n)
                .map(|t| t.size())
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(shape("encoder.Conv2d_5.weights"), [512, 256, 4, 4]);
        assert_eq!(shape("encoder.Fc_1.weights"), [100, 8192]);
        assert_eq!(shape("decoder.Fc_1.weights"), [4096, 100]);
        assert_eq!(shape("decoder.Conv2d_4.weights"), [3, 32, 3, 3]);
        assert_eq!(shape("decoder.Conv2d_5.weights"), [3, 3, 3, 3]);
        assert_eq!(shape("decoder.Conv2d_5.BatchNorm.beta"), [3]);
        assert_eq!(vars.len(), 10 * 4 + 3 * 2);
    }
}
