//! facenet's `dfc_vae` (src/generative/models/dfc_vae.py:39-88), the 64-px DFC-VAE of the
//! published smile run, after Hou et al., "Deep Feature Consistent Variational Autoencoder"
//! (arXiv 1610.00291). Layer by layer as models.md §1.2:
//!
//! encoder: 4× [conv 4×4/2 SAME (no bias) → BN(beta) → leaky 0.1] 32, 64, 128, 256 → NHWC flatten
//! 4096 → `Fc_1` (mean) and `Fc_2` (log-variance), linear with biases.
//! decoder: `Fc_1` (linear) → reshape [4, 4, 256] NHWC → 4× [nearest ×2 → conv 3×3/1 → BN →
//! leaky] 128, 64, 32, and 3 — the last batch-normalised with no activation.
//!
//! With L = 100: 2,311,403 trainable elements + 1,414 moving statistics.

use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{
    conv_bn, flatten_nhwc, unflatten_nhwc, upsample_2x, Activation, ConvBn, Fc, Padding,
    WeightInit, VAE_INIT_STDDEV,
};
use super::{ModelError, VaeNet};

const INIT: WeightInit = WeightInit::TruncatedNormal(VAE_INIT_STDDEV);

#[derive(Debug)]
pub struct DfcVae {
    encoder: Encoder,
    decoder: Decoder,
}

#[derive(Debug)]
struct Encoder {
    conv2d_1: ConvBn,
    conv2d_2: ConvBn,
    conv2d_3: ConvBn,
    conv2d_4: ConvBn,
    fc_1: Fc,
    fc_2: Fc,
}

#[derive(Debug)]
struct Decoder {
    fc_1: Fc,
    conv2d_1: ConvBn,
    conv2d_2: ConvBn,
    conv2d_3: ConvBn,
    conv2d_4: ConvBn,
}

impl DfcVae {
    /// Variables under `p.encoder.*` and `p.decoder.*`.
    pub fn new(p: &nn::Path, latent_size: i64) -> Result<DfcVae, ModelError> {
        if latent_size < 1 {
            return Err(ModelError::LatentSize(latent_size));
        }
        let e = p / "encoder";
        let down = |name: &str, c_in, c_out| {
            conv_bn(
                &(&e / name),
                c_in,
                c_out,
                (4, 4),
                2,
                Padding::Same,
                Activation::Leaky,
                INIT,
            )
        };
        let encoder = Encoder {
            conv2d_1: down("Conv2d_1", 3, 32),
            conv2d_2: down("Conv2d_2", 32, 64),
            conv2d_3: down("Conv2d_3", 64, 128),
            conv2d_4: down("Conv2d_4", 128, 256),
            fc_1: Fc::new(&(&e / "Fc_1"), 4 * 4 * 256, latent_size, INIT),
            fc_2: Fc::new(&(&e / "Fc_2"), 4 * 4 * 256, latent_size, INIT),
        };
        let d = p / "decoder";
        let up = |name: &str, c_in, c_out, act| {
            conv_bn(
                &(&d / name),
                c_in,
                c_out,
                (3, 3),
                1,
                Padding::Same,
                act,
                INIT,
            )
        };
        let decoder = Decoder {
            fc_1: Fc::new(&(&d / "Fc_1"), latent_size, 4 * 4 * 256, INIT),
            conv2d_1: up("Conv2d_1", 256, 128, Activation::Leaky),
            conv2d_2: up("Conv2d_2", 128, 64, Activation::Leaky),
            conv2d_3: up("Conv2d_3", 64, 32, Activation::Leaky),
            conv2d_4: up("Conv2d_4", 32, 3, Activation::None),
        };
        Ok(DfcVae { encoder, decoder })
    }
}

impl VaeNet for DfcVae {
    fn encode(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let e = &self.encoder;
        let net = x // [B, 3, 64, 64]
            .apply_t(&e.conv2d_1, train) // [B, 32, 32, 32]
            .apply_t(&e.conv2d_2, train) // [B, 64, 16, 16]
            .apply_t(&e.conv2d_3, train) // [B, 128, 8, 8]
            .apply_t(&e.conv2d_4, train); // [B, 256, 4, 4]
        let net = flatten_nhwc(&net); // [B, 4096], index (h·4 + w)·256 + c
        (e.fc_1.forward(&net), e.fc_2.forward(&net)) // [B, L], [B, L]
    }

    fn decode(&self, z: &Tensor, train: bool) -> Tensor {
        let d = &self.decoder;
        let net = z.apply(&d.fc_1); // [B, 4096], linear
        let net = unflatten_nhwc(&net, 4, 4, 256); // [B, 256, 4, 4]
        let net = upsample_2x(&net).apply_t(&d.conv2d_1, train); // [B, 128, 8, 8]
        let net = upsample_2x(&net).apply_t(&d.conv2d_2, train); // [B, 64, 16, 16]
        let net = upsample_2x(&net).apply_t(&d.conv2d_3, train); // [B, 32, 32, 32]
        upsample_2x(&net).apply_t(&d.conv2d_4, train) // [B, 3, 64, 64], BN, no activation
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
            let _ = e.conv2d_4.conv.weights.shallow_clone().zero_();
            e.conv2d_4
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
}
