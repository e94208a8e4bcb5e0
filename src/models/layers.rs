//! TF-slim's layers as facenet configures them, as small tch building blocks: what
//! `slim.conv2d` / `slim.fully_connected` / `slim.batch_norm` do under the arg_scopes of
//! facenet's `src/generative/models/vae_base.py` + `dfc_vae*.py` and
//! `src/models/inception_resnet_v1.py` (models.md §1.1, §3.1).
//!
//! - conv: no bias when batch-normalised; TF `SAME` padding computed from the input size, padded
//!   explicitly when TF's split is uneven (4×4 stride 1 pads 1 before, 2 after).
//! - BatchNorm: `beta` only (slim's `scale=False`: no gamma), non-trainable `moving_mean` /
//!   `moving_variance`, ε 1e-3, decay 0.995 (torch momentum 0.005); training mode normalises
//!   with batch statistics and updates the moving averages in place, as `updates_collections=None`.
//! - FC: `weights` `[out, in]` (tch layout; TF's is `[in, out]`) and `biases`.
//! - activations: leaky ReLU `max(0.1·x, x)`, ReLU.
//! - init: truncated normal (redraw beyond ±2σ) or Xavier uniform, drawn on the CPU from
//!   torch's global generator so `tch::manual_seed` fixes it on every device.
//!
//! Variable names are TF's with `/` → `.`: a layer built on `p / "Conv2d_1"` owns
//! `Conv2d_1.weights` and `Conv2d_1.BatchNorm.{beta,moving_mean,moving_variance}`.

use tch::{nn, Device, Kind, Tensor};

use super::mutation::{self, Mutation};

/// slim batch_norm `epsilon` in facenet's params.
pub const BN_EPSILON: f64 = 1e-3;
/// torch's momentum for TF's `decay` 0.995: moving ← (1 − m)·moving + m·batch.
pub const BN_MOMENTUM: f64 = 0.005;
/// facenet's `leaky_relu(x) = max(0.1·x, x)`.
pub const LEAKY_SLOPE: f64 = 0.1;
/// `tf.truncated_normal_initializer(stddev=0.1)` of the VAEs.
pub const VAE_INIT_STDDEV: f64 = 0.1;

/// TF's padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Output `ceil(in / stride)`; TF puts the odd extra pixel after (bottom/right).
    Same,
    /// No padding.
    Valid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// `max(0.1·x, x)`.
    Leaky,
}

impl Activation {
    pub fn apply(self, x: Tensor) -> Tensor {
        match self {
            Activation::None => x,
            Activation::Relu => x.relu(),
            // max(0.1·x, x) as x times a constant mask (1 where x > 0, else 0.1): the same
            // values and gradients, but backward is one multiply instead of a maximum's masks
            // and selects (the demo's step spent ~15% there).
            Activation::Leaky => {
                let slope = x.detach().gt(0.0).to_kind(x.kind()).clamp_min(LEAKY_SLOPE);
                x * slope
            }
        }
    }
}

/// How a layer's weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightInit {
    /// `tf.truncated_normal_initializer(stddev)`: N(0, σ²) redrawn beyond ±2σ.
    TruncatedNormal(f64),
    /// `slim.initializers.xavier_initializer()`: uniform ±√(6 / (fan_in + fan_out)).
    XavierUniform,
}

impl WeightInit {
    /// Draws a tensor of `dims` on the CPU (so the values do not depend on the device) and
    /// moves it to `device`. `dims` is tch's layout: `[out, in, kh, kw]` or `[out, in]`.
    pub fn draw(self, dims: &[i64], device: Device) -> Tensor {
        let t = match self {
            WeightInit::TruncatedNormal(stddev) => truncated_normal(dims) * stddev,
            WeightInit::XavierUniform => {
                let receptive: i64 = dims[2..].iter().product();
                let fan_in = dims.get(1).copied().unwrap_or(1) * receptive;
                let fan_out = dims[0] * receptive;
                let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
                Tensor::empty(dims, (Kind::Float, Device::Cpu)).uniform_(-limit, limit)
            }
        };
        t.to_device(device)
    }
}

/// Standard normal values redrawn until all lie within ±2, as TF's `truncated_normal` op.
/// Deterministic under `tch::manual_seed`: the redraws are whole-tensor `randn`s, so the
/// values depend only on the seed and `dims`.
pub fn truncated_normal(dims: &[i64]) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    redraw_beyond_two(|| Tensor::randn(dims, opts))
}

/// Draws with `draw` and replaces every value beyond ±2 by the same element of a fresh draw,
/// until none is left.
fn redraw_beyond_two(mut draw: impl FnMut() -> Tensor) -> Tensor {
    let mut x = draw();
    loop {
        let outside = x.abs().gt(2.0);
        if outside.sum(Kind::Int64).int64_value(&[]) == 0 {
            return x;
        }
        x = draw().where_self(&outside, &x);
    }
}

/// TF `SAME` padding of one axis: (before, after), the extra pixel after.
pub fn same_padding(input: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (input + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - input).max(0);
    if kernel == 4 && stride == 1 && mutation::is_active(Mutation::SameSplit) {
        return (total - total / 2, total / 2);
    }
    (total / 2, total - total / 2)
}

/// A 2-D convolution with TF's padding: `weights` `[out, in, kh, kw]`, optional `biases`.
#[derive(Debug)]
pub struct Conv2d {
    pub weights: Tensor,
    pub biases: Option<Tensor>,
    pub stride: i64,
    pub padding: Padding,
}

impl Conv2d {
    /// `kernel` is (kh, kw). Adds `weights` (and `biases`, zero, when `bias`) under `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: (i64, i64),
        stride: i64,
        padding: Padding,
        bias: bool,
        init: WeightInit,
    ) -> Conv2d {
        let dims = [c_out, c_in, kernel.0, kernel.1];
        let weights = p.add("weights", init.draw(&dims, p.device()), true);
        let biases = bias.then(|| p.zeros("biases", &[c_out]));
        Conv2d {
            weights,
            biases,
            stride,
            padding,
        }
    }
}

impl nn::Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let s = self.stride;
        let (kh, kw) = (self.weights.size()[2], self.weights.size()[3]);
        let (pad_h, pad_w) = match self.padding {
            Padding::Valid => ((0, 0), (0, 0)),
            Padding::Same => {
                let size = x.size();
                (same_padding(size[2], kh, s), same_padding(size[3], kw, s))
            }
        };
        if pad_h.0 == pad_h.1 && pad_w.0 == pad_w.1 {
            x.conv2d(
                &self.weights,
                self.biases.as_ref(),
                [s, s],
                [pad_h.0, pad_w.0],
                [1, 1],
                1,
            )
        } else {
            // TF's uneven SAME split (e.g. 4×4 stride 1: 1 before, 2 after) has no torch
            // `padding=` equivalent: pad explicitly, zeros as TF.
            x.constant_pad_nd([pad_w.0, pad_w.1, pad_h.0, pad_h.1]) // [B, C, H+t+b, W+l+r]
                .conv2d(
                    &self.weights,
                    self.biases.as_ref(),
                    [s, s],
                    [0, 0],
                    [1, 1],
                    1,
                )
        }
    }
}

/// slim's `batch_norm` with `scale=False`: `beta` plus moving statistics, no gamma.
#[derive(Debug)]
pub struct BatchNorm {
    pub beta: Tensor,
    pub moving_mean: Tensor,
    pub moving_variance: Tensor,
}

impl BatchNorm {
    /// Adds `BatchNorm.{beta,moving_mean,moving_variance}` under `p` (the layer's scope).
    pub fn new(p: &nn::Path, channels: i64) -> BatchNorm {
        let p = p / "BatchNorm";
        BatchNorm {
            beta: p.zeros("beta", &[channels]),
            moving_mean: p.zeros_no_train("moving_mean", &[channels]),
            moving_variance: p.ones_no_train("moving_variance", &[channels]),
        }
    }
}

impl nn::ModuleT for BatchNorm {
    /// `train`: normalise with the batch's (biased) statistics and move the averages towards
    /// them (unbiased variance, as TF's fused kernel); otherwise use the moving averages.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.batch_norm(
            None::<&Tensor>,
            Some(&self.beta),
            Some(&self.moving_mean),
            Some(&self.moving_variance),
            train,
            BN_MOMENTUM,
            if mutation::is_active(Mutation::BnEpsilon) {
                1e-5
            } else {
                BN_EPSILON
            },
            true,
        )
    }
}

/// slim.conv2d under facenet's arg_scope: conv (no bias) → BatchNorm (beta) → activation.
#[derive(Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub activation: Activation,
}

/// What a [`conv_bn`] layer is: channels, kernel, stride, padding, activation, initialiser.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub c_in: i64,
    pub c_out: i64,
    pub kernel: (i64, i64),
    pub stride: i64,
    pub padding: Padding,
    pub activation: Activation,
    pub init: WeightInit,
}

/// A `ConvBn` named `p` (`p.weights`, `p.BatchNorm.*`).
pub fn conv_bn(p: &nn::Path, spec: ConvSpec) -> ConvBn {
    let ConvSpec {
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        activation,
        init,
    } = spec;
    ConvBn {
        conv: Conv2d::new(p, c_in, c_out, kernel, stride, padding, false, init),
        bn: BatchNorm::new(p, c_out),
        activation,
    }
}

impl nn::ModuleT for ConvBn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.apply(&self.conv).apply_t(&self.bn, train);
        self.activation.apply(x)
    }
}

/// slim.fully_connected with `normalizer_fn=None`: `weights` `[out, in]` and `biases`.
#[derive(Debug)]
pub struct Fc {
    pub weights: Tensor,
    pub biases: Tensor,
}

impl Fc {
    pub fn new(p: &nn::Path, c_in: i64, c_out: i64, init: WeightInit) -> Fc {
        Fc {
            weights: p.add("weights", init.draw(&[c_out, c_in], p.device()), true),
            biases: p.zeros("biases", &[c_out]),
        }
    }
}

impl nn::Module for Fc {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weights, Some(&self.biases))
    }
}

/// `slim.flatten` of an NHWC tensor, from tch's NCHW: `[B, C, H, W]` → `[B, H·W·C]` with
/// index (h·W + w)·C + c, so TF's FC weights apply unchanged (up to the transpose).
pub fn flatten_nhwc(x: &Tensor) -> Tensor {
    if mutation::is_active(Mutation::FlattenNchw) {
        return x.flatten(1, -1);
    }
    x.permute([0, 2, 3, 1]) // [B, H, W, C]
        .flatten(1, -1) // [B, H·W·C]
}

/// `tf.reshape(x, [-1, h, w, c])` into tch's NCHW: `[B, h·w·c]` → `[B, c, h, w]`.
pub fn unflatten_nhwc(x: &Tensor, h: i64, w: i64, c: i64) -> Tensor {
    if mutation::is_active(Mutation::FlattenNchw) {
        return x.reshape([-1, c, h, w]);
    }
    x.reshape([-1, h, w, c]) // [B, h, w, c]
        .permute([0, 3, 1, 2]) // [B, c, h, w]
}

/// `tf.image.resize_nearest_neighbor` to twice the size: pixel replication.
pub fn upsample_2x(x: &Tensor) -> Tensor {
    let size = x.size();
    x.upsample_nearest2d([size[2] * 2, size[3] * 2], None, None) // [B, C, 2H, 2W]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{Module, ModuleT, VarStore};

    fn cpu() -> (Kind, Device) {
        (Kind::Float, Device::Cpu)
    }

    #[test]
    fn same_padding_matches_tf_cheat_sheet() {
        // models.md §1.5
        for input in [64, 32, 16, 8, 128] {
            assert_eq!(same_padding(input, 4, 2), (1, 1), "4/2 at {input}");
        }
        assert_eq!(same_padding(7, 4, 1), (1, 2));
        assert_eq!(same_padding(8, 3, 1), (1, 1));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
        assert_eq!(same_padding(17, 7, 1), (3, 3));
        assert_eq!(same_padding(5, 3, 2), (1, 1));
        assert_eq!(same_padding(6, 3, 2), (0, 1));
    }

    #[test]
    fn four_by_four_stride_one_same_pads_one_before_two_after() {
        // A 4×4 kernel with a single 1 at (0, 0) reads input pixel (i − 1, j − 1) for output
        // (i, j) when 1 pixel is padded before: output row 0 / column 0 are the padding (0),
        // and the output is the input shifted down-right by one.
        let vs = VarStore::new(Device::Cpu);
        let conv = Conv2d::new(
            &vs.root(),
            1,
            1,
            (4, 4),
            1,
            Padding::Same,
            false,
            WeightInit::XavierUniform,
        );
        let mut k = vec![0f32; 16];
        k[0] = 1.0;
        tch::no_grad(|| {
            conv.weights
                .shallow_clone()
                .copy_(&Tensor::from_slice(&k).view([1, 1, 4, 4]))
        });
        let x = Tensor::arange(25, cpu()).view([1, 1, 5, 5]) + 1.0;
        let y = conv.forward(&x);
        assert_eq!(y.size(), [1, 1, 5, 5]);
        let expected = x
            .constant_pad_nd([1, 0, 1, 0])
            .narrow(2, 0, 5)
            .narrow(3, 0, 5);
        assert!(y.equal(&expected), "{y}");
        // And a 1 at (3, 3) reads (i + 2, j + 2): 2 pixels of padding after.
        let mut k = vec![0f32; 16];
        k[15] = 1.0;
        tch::no_grad(|| {
            conv.weights
                .shallow_clone()
                .copy_(&Tensor::from_slice(&k).view([1, 1, 4, 4]))
        });
        let y = conv.forward(&x);
        let expected = x
            .constant_pad_nd([0, 2, 0, 2])
            .narrow(2, 2, 5)
            .narrow(3, 2, 5);
        assert!(y.equal(&expected), "{y}");
    }

    #[test]
    fn batch_norm_has_beta_and_moving_stats_only_named_after_tf() {
        let vs = VarStore::new(Device::Cpu);
        let _ = conv_bn(
            &(vs.root() / "encoder" / "Conv2d_1"),
            ConvSpec {
                c_in: 3,
                c_out: 2,
                kernel: (4, 4),
                stride: 2,
                padding: Padding::Same,
                activation: Activation::Leaky,
                init: WeightInit::TruncatedNormal(0.1),
            },
        );
        let mut names: Vec<_> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.size(), t.requires_grad()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("encoder.Conv2d_1.BatchNorm.beta".to_string(), vec![2], true),
                (
                    "encoder.Conv2d_1.BatchNorm.moving_mean".to_string(),
                    vec![2],
                    false
                ),
                (
                    "encoder.Conv2d_1.BatchNorm.moving_variance".to_string(),
                    vec![2],
                    false
                ),
                (
                    "encoder.Conv2d_1.weights".to_string(),
                    vec![2, 3, 4, 4],
                    true
                ),
            ]
        );
    }

    #[test]
    fn batch_norm_training_normalises_and_moves_averages_by_0_005() {
        let vs = VarStore::new(Device::Cpu);
        let bn = BatchNorm::new(&vs.root(), 1);
        let _ = tch::no_grad(|| bn.beta.shallow_clone().fill_(0.5));
        let x = Tensor::from_slice(&[1.0f32, 3.0]).view([2, 1, 1, 1]); // mean 2, biased var 1
        let y = bn.forward_t(&x, true);
        let expected = Tensor::from_slice(&[-1.0f32, 1.0]).view([2, 1, 1, 1])
            / (1.0f64 + BN_EPSILON).sqrt()
            + 0.5;
        assert!(y.allclose(&expected, 1e-6, 1e-6, false), "{y}");
        // moving_mean = 0.995·0 + 0.005·2; moving_variance = 0.995·1 + 0.005·2 (unbiased var)
        assert!((bn.moving_mean.double_value(&[0]) - 0.01).abs() < 1e-7);
        assert!((bn.moving_variance.double_value(&[0]) - (0.995 + 0.01)).abs() < 1e-7);
        // Inference uses the moving statistics.
        let y = bn.forward_t(&x, false);
        let expected = (&x - 0.01) / (1.005f64 + BN_EPSILON).sqrt() + 0.5;
        assert!(y.allclose(&expected, 1e-6, 1e-6, false));
    }

    #[test]
    fn leaky_relu_equals_the_maximum_form_bitwise_with_its_gradient() {
        tch::manual_seed(5);
        let x = Tensor::randn([4, 3, 9, 9], cpu()).set_requires_grad(true);
        let ours = Activation::Leaky.apply(x.shallow_clone());
        let reference = x.maximum(&(&x * LEAKY_SLOPE));
        assert!(ours.equal(&reference));
        let g = Tensor::randn([4, 3, 9, 9], cpu());
        let grad = |y: &Tensor| {
            let mut grads = Tensor::run_backward(&[y * &g], &[&x], false, false);
            grads.remove(0)
        };
        assert!(grad(&ours).equal(&grad(&reference)));
    }

    #[test]
    fn leaky_relu_slope_is_0_1() {
        let x = Tensor::from_slice(&[-2.0f32, 0.0, 3.0]);
        let y = Activation::Leaky.apply(x);
        assert_eq!(Vec::<f32>::try_from(&y).unwrap(), [-0.2, 0.0, 3.0]);
    }

    #[test]
    fn truncated_normal_redraws_only_the_values_beyond_two() {
        // (Determinism under manual_seed is not asserted here: test threads share torch's
        // global generator. The init is randn calls only, so it follows the seed.)
        let draws = [[0.5f32, 3.0, -2.5], [9.0, -4.0, 7.0], [9.0, 1.5, -2.0]];
        let mut i = 0;
        let x = redraw_beyond_two(|| {
            i += 1;
            Tensor::from_slice(&draws[i - 1])
        });
        assert_eq!(Vec::<f32>::try_from(&x).unwrap(), [0.5, 1.5, -2.0]);
        assert_eq!(i, 3);
        let a = truncated_normal(&[20_000]);
        assert!(a.abs().max().double_value(&[]) <= 2.0);
        // The std of a N(0,1) truncated at ±2 is ≈ 0.8796.
        let std = a.std(true).double_value(&[]);
        assert!((std - 0.8796).abs() < 0.02, "{std}");
    }

    #[test]
    fn nhwc_flatten_orders_features_as_tf() {
        // x[b, c, h, w] = c + 10·w + 100·h ⇒ flattened index (h·W + w)·C + c holds that value.
        let (c, h, w) = (3i64, 2i64, 4i64);
        let x = Tensor::arange(c, cpu()).view([1, c, 1, 1])
            + Tensor::arange(w, cpu()).view([1, 1, 1, w]) * 10.0
            + Tensor::arange(h, cpu()).view([1, 1, h, 1]) * 100.0;
        let flat = flatten_nhwc(&x);
        let v = Vec::<f32>::try_from(&flat.view([-1])).unwrap();
        for hh in 0..h {
            for ww in 0..w {
                for cc in 0..c {
                    assert_eq!(
                        v[((hh * w + ww) * c + cc) as usize],
                        (cc + 10 * ww + 100 * hh) as f32
                    );
                }
            }
        }
        assert!(unflatten_nhwc(&flat, h, w, c).equal(&x));
    }

    #[test]
    fn upsampling_replicates_pixels() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 1, 2, 2]);
        let y = upsample_2x(&x);
        let expected = Tensor::from_slice(&[
            1.0f32, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0,
        ])
        .view([1, 1, 4, 4]);
        assert!(y.equal(&expected));
    }
}
