//! facenet's `dfc_vae_large` (src/generative/models/dfc_vae_large.py:37-95): the DFC-VAE at
//! 128 px (models.md §1.4), after Hou et al., "Deep Feature Consistent Variational
//! Autoencoder" (arXiv 1610.00291), whose official code also works at 128 px.
//!
//! encoder: 5× [conv 4×4/2 → BN(beta) → leaky 0.1] 32, 64, 128, 256, 512 → NHWC flatten 8192 →
//! `Fc_1` / `Fc_2`. decoder: `Fc_1` → [4, 4, 256] → up + conv 3×3 128, 64, 32, then **3
//! channels at 64 px** (`Conv2d_4`, leaky), `Upsample_5` to 128 and `Conv2d_5` 3 → 3 (BN, no
//! activation): the decoder squeezes to RGB before the last upsampling, as facenet's does.

use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{
    conv_bn, flatten_nhwc, unflatten_nhwc, upsample_2x, Activation, ConvBn, Fc, Padding,
    WeightInit, VAE_INIT_STDDEV,
};
use super::{ModelError, VaeNet};

const INIT: WeightInit = WeightInit::TruncatedNormal(VAE_INIT_STDDEV);

#[derive(Debug)]
pub struct DfcVaeLarge {
    encoder: Encoder,
    decoder: Decoder,
}

#[derive(Debug)]
struct Encoder {
    conv2d_1: ConvBn,
    conv2d_2: ConvBn,
    conv2d_3: ConvBn,
    conv2d_4: ConvBn,
    conv2d_5: ConvBn,
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
    conv2d_5: ConvBn,
}

impl DfcVaeLarge {
    /// Variables under `p.encoder.*` and `p.decoder.*`.
    pub fn new(p: &nn::Path, latent_size: i64) -> Result<DfcVaeLarge, ModelError> {
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
            conv2d_5: down("Conv2d_5", 256, 512),
            fc_1: Fc::new(&(&e / "Fc_1"), 4 * 4 * 512, latent_size, INIT),
            fc_2: Fc::new(&(&e / "Fc_2"), 4 * 4 * 512, latent_size, INIT),
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
            conv2d_4: up("Conv2d_4", 32, 3, Activation::Leaky),
            conv2d_5: up("Conv2d_5", 3, 3, Activation::None),
        };
        Ok(DfcVaeLarge { encoder, decoder })
    }
}

impl VaeNet for DfcVaeLarge {
    fn encode(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let e = &self.encoder;
        let net = x // [B, 3, 128, 128]
            .apply_t(&e.conv2d_1, train) // [B, 32, 64, 64]
            .apply_t(&e.conv2d_2, train) // [B, 64, 32, 32]
            .apply_t(&e.conv2d_3, train) // [B, 128, 16, 16]
            .apply_t(&e.conv2d_4, train) // [B, 256, 8, 8]
            .apply_t(&e.conv2d_5, train); // [B, 512, 4, 4]
        let net = flatten_nhwc(&net); // [B, 8192], index (h·4 + w)·512 + c
        (e.fc_1.forward(&net), e.fc_2.forward(&net)) // [B, L], [B, L]
    }

    fn decode(&self, z: &Tensor, train: bool) -> Tensor {
        let d = &self.decoder;
        let net = z.apply(&d.fc_1); // [B, 4096], linear
        let net = unflatten_nhwc(&net, 4, 4, 256); // [B, 256, 4, 4]
        let net = upsample_2x(&net).apply_t(&d.conv2d_1, train); // [B, 128, 8, 8]
        let net = upsample_2x(&net).apply_t(&d.conv2d_2, train); // [B, 64, 16, 16]
        let net = upsample_2x(&net).apply_t(&d.conv2d_3, train); // [B, 32, 32, 32]
        let net = upsample_2x(&net).apply_t(&d.conv2d_4, train); // [B, 3, 64, 64], leaky
        upsample_2x(&net).apply_t(&d.conv2d_5, train) // [B, 3, 128, 128], BN, no activation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::Device;

    #[test]
    fn large_encoder_flattens_8192_and_decoder_squeezes_to_rgb_at_64() {
        let vs = VarStore::new(Device::Cpu);
        let _vae = DfcVaeLarge::new(&vs.root(), 100).unwrap();
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
