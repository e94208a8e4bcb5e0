//! facenet's `dfc_vae_resnet` (src/generative/models/dfc_vae_resnet.py:37-109): `dfc_vae` with
//! three residual units after every scale change (models.md §1.3), after Hou et al., "Deep
//! Feature Consistent Variational Autoencoder" (arXiv 1610.00291).
//!
//! A residual unit is `conv2d_block`: out = in + 0.1·leaky(BN(conv(in))), nothing after the
//! add. `slim.repeat(…, 3, conv2d_block, scope='Conv2d_1b')` names the units
//! `Conv2d_1b.Conv2d_1b_1 … _3`. The encoder's units are 4×4 **stride 1** SAME: padded 1
//! before and 2 after (layers::same_padding). The decoder ends at 3 channels at 64 px:
//! `Conv2d_4a` (leaky) + 3 units of 3 channels + `Conv2d_4c` (BN, no activation).

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{
    conv_bn, flatten_nhwc, unflatten_nhwc, upsample_2x, Activation, ConvBn, ConvSpec, Fc, Padding,
    WeightInit, VAE_INIT_STDDEV,
};
use super::{ModelError, VaeNet};

const INIT: WeightInit = WeightInit::TruncatedNormal(VAE_INIT_STDDEV);
/// `conv2d_block`'s scale.
const RESIDUAL_SCALE: f64 = 0.1;
/// `slim.repeat(net, 3, conv2d_block, …)`.
const UNITS: usize = 3;

/// `slim.repeat(net, 3, conv2d_block, 0.1, c, k, 1, scope=…)`: 3 residual units of width `c`.
#[derive(Debug)]
struct ResidualUnits(Vec<ConvBn>);

impl ResidualUnits {
    fn new(p: &nn::Path, scope: &str, c: i64, k: i64) -> ResidualUnits {
        let p = p / scope;
        let units = (1..=UNITS)
            .map(|i| {
                conv_bn(
                    &(&p / format!("{scope}_{i}")),
                    ConvSpec {
                        c_in: c,
                        c_out: c,
                        kernel: (k, k),
                        stride: 1,
                        padding: Padding::Same,
                        activation: Activation::Leaky,
                        init: INIT,
                    },
                )
            })
            .collect();
        ResidualUnits(units)
    }
}

impl ModuleT for ResidualUnits {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.0.iter().fold(x.shallow_clone(), |net, unit| {
            let branch = net.apply_t(unit, train) * RESIDUAL_SCALE; // same shape
            net + branch
        })
    }
}

/// One scale: a plain conv then its residual units.
#[derive(Debug)]
struct Stage {
    conv: ConvBn,
    units: ResidualUnits,
}

impl ModuleT for Stage {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply_t(&self.conv, train).apply_t(&self.units, train)
    }
}

#[derive(Debug)]
pub struct DfcVaeResnet {
    encoder: Encoder,
    decoder: Decoder,
}

#[derive(Debug)]
struct Encoder {
    stage_1: Stage,
    stage_2: Stage,
    stage_3: Stage,
    stage_4: Stage,
    fc_1: Fc,
    fc_2: Fc,
}

#[derive(Debug)]
struct Decoder {
    fc_1: Fc,
    stage_1: Stage,
    stage_2: Stage,
    stage_3: Stage,
    stage_4: Stage,
    conv2d_4c: ConvBn,
}

impl DfcVaeResnet {
    /// Variables under `p.encoder.*` and `p.decoder.*`.
    pub fn new(p: &nn::Path, latent_size: i64) -> Result<DfcVaeResnet, ModelError> {
        if latent_size < 1 {
            return Err(ModelError::LatentSize(latent_size));
        }
        let e = p / "encoder";
        // Conv2d_Na 4×4/2 then Conv2d_Nb: 3 units of 4×4/1.
        let down = |n: usize, c_in, c_out| Stage {
            conv: conv_bn(
                &(&e / format!("Conv2d_{n}a")),
                ConvSpec {
                    c_in,
                    c_out,
                    kernel: (4, 4),
                    stride: 2,
                    padding: Padding::Same,
                    activation: Activation::Leaky,
                    init: INIT,
                },
            ),
            units: ResidualUnits::new(&e, &format!("Conv2d_{n}b"), c_out, 4),
        };
        let encoder = Encoder {
            stage_1: down(1, 3, 32),
            stage_2: down(2, 32, 64),
            stage_3: down(3, 64, 128),
            stage_4: down(4, 128, 256),
            fc_1: Fc::new(&(&e / "Fc_1"), 4 * 4 * 256, latent_size, INIT),
            fc_2: Fc::new(&(&e / "Fc_2"), 4 * 4 * 256, latent_size, INIT),
        };
        let d = p / "decoder";
        // Conv2d_Na 3×3/1 then Conv2d_Nb: 3 units of 3×3/1.
        let up = |n: usize, c_in, c_out| Stage {
            conv: conv_bn(
                &(&d / format!("Conv2d_{n}a")),
                ConvSpec {
                    c_in,
                    c_out,
                    kernel: (3, 3),
                    stride: 1,
                    padding: Padding::Same,
                    activation: Activation::Leaky,
                    init: INIT,
                },
            ),
            units: ResidualUnits::new(&d, &format!("Conv2d_{n}b"), c_out, 3),
        };
        let decoder = Decoder {
            fc_1: Fc::new(&(&d / "Fc_1"), latent_size, 4 * 4 * 256, INIT),
            stage_1: up(1, 256, 128),
            stage_2: up(2, 128, 64),
            stage_3: up(3, 64, 32),
            stage_4: up(4, 32, 3),
            conv2d_4c: conv_bn(
                &(&d / "Conv2d_4c"),
                ConvSpec {
                    c_in: 3,
                    c_out: 3,
                    kernel: (3, 3),
                    stride: 1,
                    padding: Padding::Same,
                    activation: Activation::None,
                    init: INIT,
                },
            ),
        };
        Ok(DfcVaeResnet { encoder, decoder })
    }
}

impl VaeNet for DfcVaeResnet {
    fn encode(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let e = &self.encoder;
        let net = x // [B, 3, 64, 64]
            .apply_t(&e.stage_1, train) // [B, 32, 32, 32]
            .apply_t(&e.stage_2, train) // [B, 64, 16, 16]
            .apply_t(&e.stage_3, train) // [B, 128, 8, 8]
            .apply_t(&e.stage_4, train); // [B, 256, 4, 4]
        let net = flatten_nhwc(&net); // [B, 4096], index (h·4 + w)·256 + c
        (e.fc_1.forward(&net), e.fc_2.forward(&net)) // [B, L], [B, L]
    }

    fn decode(&self, z: &Tensor, train: bool) -> Tensor {
        let d = &self.decoder;
        let net = z.apply(&d.fc_1); // [B, 4096], linear
        let net = unflatten_nhwc(&net, 4, 4, 256); // [B, 256, 4, 4]
        let net = upsample_2x(&net).apply_t(&d.stage_1, train); // [B, 128, 8, 8]
        let net = upsample_2x(&net).apply_t(&d.stage_2, train); // [B, 64, 16, 16]
        let net = upsample_2x(&net).apply_t(&d.stage_3, train); // [B, 32, 32, 32]
        let net = upsample_2x(&net).apply_t(&d.stage_4, train); // [B, 3, 64, 64]
        net.apply_t(&d.conv2d_4c, train) // [B, 3, 64, 64], BN, no activation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    #[test]
    fn residual_units_are_named_by_slim_repeat() {
        let vs = VarStore::new(Device::Cpu);
        let _vae = DfcVaeResnet::new(&vs.root(), 100).unwrap();
        let vars = vs.variables();
        let shape = |n: &str| {
            vars.get(n)
                .map(|t| t.size())
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(shape("encoder.Conv2d_1a.weights"), [32, 3, 4, 4]);
        assert_eq!(
            shape("encoder.Conv2d_1b.Conv2d_1b_2.weights"),
            [32, 32, 4, 4]
        );
        assert_eq!(shape("encoder.Conv2d_4b.Conv2d_4b_3.BatchNorm.beta"), [256]);
        assert_eq!(shape("decoder.Conv2d_4a.weights"), [3, 32, 3, 3]);
        assert_eq!(shape("decoder.Conv2d_4b.Conv2d_4b_1.weights"), [3, 3, 3, 3]);
        assert_eq!(shape("decoder.Conv2d_4c.BatchNorm.moving_mean"), [3]);
        // 8 stages × (1 + 3) convs + Conv2d_4c, each 4 variables; 3 FCs of 2.
        assert_eq!(vars.len(), (8 * 4 + 1) * 4 + 3 * 2);
    }

    #[test]
    fn residual_unit_adds_a_tenth_of_its_branch() {
        // With zero weights the branch is leaky(beta): out = in + 0.1·leaky(beta), per unit.
        let vs = VarStore::new(Device::Cpu);
        let units = ResidualUnits::new(&vs.root(), "Conv2d_1b", 2, 4);
        tch::no_grad(|| {
            for unit in &units.0 {
                let _ = unit.conv.weights.shallow_clone().zero_();
                unit.bn
                    .beta
                    .shallow_clone()
                    .copy_(&Tensor::from_slice(&[1.0f32, -1.0]));
            }
        });
        let x = Tensor::zeros([1, 2, 3, 3], (Kind::Float, Device::Cpu));
        let y = units.forward_t(&x, false);
        // 3 units: channel 0 gains 0.1·1 each, channel 1 gains 0.1·(−0.1) each.
        assert!((y.double_value(&[0, 0, 1, 1]) - 0.3).abs() < 1e-6);
        assert!((y.double_value(&[0, 1, 2, 0]) + 0.03).abs() < 1e-6);
    }
}
