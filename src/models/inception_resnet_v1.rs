//! facenet's Inception-ResNet-v1 (src/models/inception_resnet_v1.py; Szegedy et al.,
//! "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
//! arXiv 1602.07261) as the frozen face net of the perceptual loss (models.md §3.1).
//!
//! Every conv is conv (no bias) → BN (beta only, ε 1e-3) → ReLU, except each residual block's
//! up-projection `Conv2d_1x1` (bias, no BN, no activation): block = act(x + scale·up(concat
//! branches)). Variables are named by facenet's TF scopes: `InceptionResnetV1.Conv2d_1a_3x3.*`,
//! `InceptionResnetV1.Repeat.block35_1.Branch_1.Conv2d_0b_3x3.*`,
//! `InceptionResnetV1.Repeat_1.block17_10.*`, `InceptionResnetV1.Repeat_2.block8_5.*`,
//! `InceptionResnetV1.Block8.*`; [`END_POINTS`] are facenet's `end_points` keys, the names
//! `loss_features` uses.
//!
//! The net is built only up to the deepest end point asked for (the perceptual loss reads the
//! first three convs, ~0.1 % of the weights). `forward_features` runs in inference mode: BN from
//! the moving statistics, no dropout — train_vae.py's `phase_train=False, keep_prob=1.0`;
//! `forward_end_point_t` also runs in training mode (batch statistics, moving averages updated),
//! for `train-facenet`. The `Bottleneck` FC after `PreLogitsFlatten` is not built here: no end
//! point reads it (`train-facenet` builds it as part of its classification head). Freezing is the
//! caller's (`VarStore::freeze`); loading is `models::weights`.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{conv_bn, Activation, Conv2d, ConvBn, ConvSpec, Padding, WeightInit};
use super::ModelError;

/// facenet's `end_points` keys in network order.
pub const END_POINTS: &[&str] = &[
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "MaxPool_3a_3x3",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "Conv2d_4b_3x3",
    "Mixed_5a",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_7a",
    "Mixed_8a",
    "Mixed_8b",
    "PrePool",
    "PreLogitsFlatten",
];

/// How each end point changes the side of the map: facenet's VALID 3×3 stride-2 and
/// stride-1 layers, everything else keeps it (SAME or 1×1).
#[derive(Clone, Copy)]
enum Side {
    Valid3Stride2,
    Valid3Stride1,
    Keep,
    /// Average pool over the whole map, flattened.
    Pool,
}

const SIDES: [Side; 15] = {
    use Side::*;
    [
        Valid3Stride2,
        Valid3Stride1,
        Keep,
        Valid3Stride2,
        Keep,
        Valid3Stride1,
        Valid3Stride2,
        Keep,
        Valid3Stride2,
        Keep,
        Valid3Stride2,
        Keep,
        Keep,
        Keep,
        Pool,
    ]
};

/// The index of an end point in [`END_POINTS`], or an error listing the valid names.
pub fn end_point_index(name: &str) -> Result<usize, ModelError> {
    END_POINTS
        .iter()
        .position(|&n| n == name)
        .ok_or_else(|| ModelError::UnknownEndPoint {
            name: name.to_string(),
            valid: END_POINTS.join("`, `"),
        })
}

/// The end point a variable of this net belongs to, from its name
/// (`InceptionResnetV1.Conv2d_2a_3x3.weights` → `Conv2d_2a_3x3`,
/// `InceptionResnetV1.Repeat.block35_3.…` → `Mixed_5a`); `None` for names outside the net
/// (the `Bottleneck`, `Logits`, another model).
pub fn end_point_of_variable(name: &str) -> Option<&'static str> {
    let scope = name.strip_prefix("InceptionResnetV1.")?.split('.').next()?;
    match scope {
        "Repeat" => Some("Mixed_5a"),
        "Repeat_1" => Some("Mixed_6b"),
        "Repeat_2" => Some("Mixed_8a"),
        "Block8" => Some("Mixed_8b"),
        _ => END_POINTS.iter().copied().find(|&e| e == scope),
    }
}

/// Widths and repeats. [`InceptionConfig::facenet`] is the published net;
/// [`InceptionConfig::mini`] keeps every name with one block per repeat and a few channels
/// (the test fixture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InceptionConfig {
    /// Output widths of Conv2d_1a_3x3, 2a, 2b, 3b_1x1, 4a, 4b (32, 32, 64, 80, 192, 256).
    pub stem: [i64; 6],
    /// Every branch conv of block35 (32).
    pub block35: i64,
    /// reduction_a's k, l, m, n (192, 192, 256, 384): Branch_1 0a → k, 0b → l, 1a → m;
    /// Branch_0 → n.
    pub mixed_6a: [i64; 4],
    /// Every branch conv of block17 (128).
    pub block17: i64,
    /// reduction_b (256, 384, 256): every Conv2d_0a_1x1 → [0]; Branch_0 Conv2d_1a_3x3 → [1];
    /// Branch_1 Conv2d_1a_3x3 and Branch_2 Conv2d_0b_3x3 / Conv2d_1a_3x3 → [2].
    pub mixed_7a: [i64; 3],
    /// Every branch conv of block8 (192).
    pub block8: i64,
    /// Blocks in Repeat (block35), Repeat_1 (block17), Repeat_2 (block8): (5, 10, 5).
    pub repeats: (usize, usize, usize),
}

impl InceptionConfig {
    /// facenet's Inception-ResNet-v1 (1792 channels before the bottleneck).
    pub fn facenet() -> Self {
        InceptionConfig {
            stem: [32, 32, 64, 80, 192, 256],
            block35: 32,
            mixed_6a: [192, 192, 256, 384],
            block17: 128,
            mixed_7a: [256, 384, 256],
            block8: 192,
            repeats: (5, 10, 5),
        }
    }

    /// Same names and structure, one block per repeat, a few channels: a net that builds and
    /// runs in milliseconds (Mixed_6a has 44 channels, Mixed_7a 72).
    pub fn mini() -> Self {
        InceptionConfig {
            stem: [4, 4, 8, 8, 12, 16],
            block35: 4,
            mixed_6a: [8, 8, 12, 16],
            block17: 8,
            mixed_7a: [8, 12, 8],
            block8: 8,
            repeats: (1, 1, 1),
        }
    }

    fn validate(&self) -> Result<(), ModelError> {
        let widths = self
            .stem
            .iter()
            .chain(&self.mixed_6a)
            .chain(&self.mixed_7a)
            .chain([&self.block35, &self.block17, &self.block8]);
        if widths.into_iter().any(|&w| w < 1) {
            return Err(ModelError::Config(format!(
                "every width must be at least 1: {self:?}"
            )));
        }
        Ok(())
    }
}

/// An Inception-ResNet block (block35 / block17 / block8): parallel conv branches,
/// concatenated, projected back by `Conv2d_1x1`, added with `scale`, then ReLU (or not).
#[derive(Debug)]
struct Block {
    branches: Vec<Vec<ConvBn>>,
    up: Conv2d,
    scale: f64,
    relu: bool,
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let towers: Vec<Tensor> = self.branches.iter().map(|b| chain(b, x, train)).collect(); // [B, w_i, H, W] each
        let mixed = Tensor::cat(&towers, 1); // [B, Σw, H, W]
        let up = mixed.apply(&self.up); // [B, C, H, W]
        let net = x + up * self.scale; // [B, C, H, W]
        if self.relu {
            net.relu()
        } else {
            net
        }
    }
}

/// reduction_a / reduction_b: stride-2 conv branches plus a 3×3/2 max pool, concatenated.
#[derive(Debug)]
struct Reduction {
    branches: Vec<Vec<ConvBn>>,
}

impl ModuleT for Reduction {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut towers: Vec<Tensor> = self.branches.iter().map(|b| chain(b, x, train)).collect(); // [B, w_i, H', W'] each
        towers.push(max_pool_3x3_s2(x)); // [B, C, H', W']
        Tensor::cat(&towers, 1) // [B, Σw + C, H', W']
    }
}

fn chain(layers: &[ConvBn], x: &Tensor, train: bool) -> Tensor {
    layers
        .iter()
        .fold(x.shallow_clone(), |net, layer| net.apply_t(layer, train))
}

/// `slim.max_pool2d(net, 3, stride=2, padding='VALID')`.
fn max_pool_3x3_s2(x: &Tensor) -> Tensor {
    x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false) // [B, C, (H−3)/2+1, (W−3)/2+1]
}

#[derive(Debug)]
enum Stage {
    Conv(ConvBn),
    MaxPool,
    Blocks(Vec<Block>),
    Reduction(Reduction),
    Identity,
    AvgPoolFlatten,
}

impl ModuleT for Stage {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Stage::Conv(conv) => x.apply_t(conv, train),
            Stage::MaxPool => max_pool_3x3_s2(x),
            Stage::Blocks(blocks) => blocks
                .iter()
                .fold(x.shallow_clone(), |net, block| net.apply_t(block, train)),
            Stage::Reduction(r) => x.apply_t(r, train),
            Stage::Identity => x.shallow_clone(),
            Stage::AvgPoolFlatten => x.adaptive_avg_pool2d([1, 1]).flatten(1, -1), // [B, C]
        }
    }
}

const INIT: WeightInit = WeightInit::XavierUniform;

/// slim.conv2d under inception_resnet_v1's arg_scope: BN + ReLU, SAME unless said otherwise.
fn conv(
    p: &nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: (i64, i64),
    stride: i64,
    padding: Padding,
) -> ConvBn {
    conv_bn(
        p,
        ConvSpec {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
            activation: Activation::Relu,
            init: INIT,
        },
    )
}

fn conv1x1(p: &nn::Path, c_in: i64, c_out: i64) -> ConvBn {
    conv(p, c_in, c_out, (1, 1), 1, Padding::Same)
}

/// The block's `Conv2d_1x1` up-projection: bias, no BN, no activation.
fn up_projection(p: &nn::Path, c_in: i64, c_out: i64) -> Conv2d {
    Conv2d::new(
        &(p / "Conv2d_1x1"),
        c_in,
        c_out,
        (1, 1),
        1,
        Padding::Same,
        true,
        INIT,
    )
}

/// Inception-ResNet-A (35×35 in the 299-px paper): 3 branches of width `w`.
fn block35(p: &nn::Path, c: i64, w: i64, scale: f64) -> Block {
    let (b0, b1, b2) = (p / "Branch_0", p / "Branch_1", p / "Branch_2");
    let branches = vec![
        vec![conv1x1(&(&b0 / "Conv2d_1x1"), c, w)],
        vec![
            conv1x1(&(&b1 / "Conv2d_0a_1x1"), c, w),
            conv(&(&b1 / "Conv2d_0b_3x3"), w, w, (3, 3), 1, Padding::Same),
        ],
        vec![
            conv1x1(&(&b2 / "Conv2d_0a_1x1"), c, w),
            conv(&(&b2 / "Conv2d_0b_3x3"), w, w, (3, 3), 1, Padding::Same),
            conv(&(&b2 / "Conv2d_0c_3x3"), w, w, (3, 3), 1, Padding::Same),
        ],
    ];
    Block {
        branches,
        up: up_projection(p, 3 * w, c),
        scale,
        relu: true,
    }
}

/// Inception-ResNet-B (17×17): 1×1 and 1×1 → 1×7 → 7×1 branches of width `w`.
fn block17(p: &nn::Path, c: i64, w: i64, scale: f64) -> Block {
    let (b0, b1) = (p / "Branch_0", p / "Branch_1");
    let branches = vec![
        vec![conv1x1(&(&b0 / "Conv2d_1x1"), c, w)],
        vec![
            conv1x1(&(&b1 / "Conv2d_0a_1x1"), c, w),
            conv(&(&b1 / "Conv2d_0b_1x7"), w, w, (1, 7), 1, Padding::Same),
            conv(&(&b1 / "Conv2d_0c_7x1"), w, w, (7, 1), 1, Padding::Same),
        ],
    ];
    Block {
        branches,
        up: up_projection(p, 2 * w, c),
        scale,
        relu: true,
    }
}

/// Inception-ResNet-C (8×8): 1×1 and 1×1 → 1×3 → 3×1 branches of width `w`.
fn block8(p: &nn::Path, c: i64, w: i64, scale: f64, relu: bool) -> Block {
    let (b0, b1) = (p / "Branch_0", p / "Branch_1");
    let branches = vec![
        vec![conv1x1(&(&b0 / "Conv2d_1x1"), c, w)],
        vec![
            conv1x1(&(&b1 / "Conv2d_0a_1x1"), c, w),
            conv(&(&b1 / "Conv2d_0b_1x3"), w, w, (1, 3), 1, Padding::Same),
            conv(&(&b1 / "Conv2d_0c_3x1"), w, w, (3, 1), 1, Padding::Same),
        ],
    ];
    Block {
        branches,
        up: up_projection(p, 2 * w, c),
        scale,
        relu,
    }
}

/// `slim.repeat(net, n, block, scale=…)`: scope `repeat_scope`, blocks `<name>_1 … _n`.
fn repeat(
    p: &nn::Path,
    repeat_scope: &str,
    name: &str,
    n: usize,
    build: impl Fn(&nn::Path) -> Block,
) -> Vec<Block> {
    let p = p / repeat_scope;
    (1..=n)
        .map(|i| build(&(&p / format!("{name}_{i}"))))
        .collect()
}

/// reduction_a(k, l, m, n) in scope Mixed_6a.
fn mixed_6a(p: &nn::Path, c: i64, [k, l, m, n]: [i64; 4]) -> Reduction {
    let (b0, b1) = (p / "Branch_0", p / "Branch_1");
    Reduction {
        branches: vec![
            vec![conv(
                &(&b0 / "Conv2d_1a_3x3"),
                c,
                n,
                (3, 3),
                2,
                Padding::Valid,
            )],
            vec![
                conv1x1(&(&b1 / "Conv2d_0a_1x1"), c, k),
                conv(&(&b1 / "Conv2d_0b_3x3"), k, l, (3, 3), 1, Padding::Same),
                conv(&(&b1 / "Conv2d_1a_3x3"), l, m, (3, 3), 2, Padding::Valid),
            ],
        ],
    }
}

/// reduction_b in scope Mixed_7a.
fn mixed_7a(p: &nn::Path, c: i64, [r, a, b]: [i64; 3]) -> Reduction {
    let (b0, b1, b2) = (p / "Branch_0", p / "Branch_1", p / "Branch_2");
    Reduction {
        branches: vec![
            vec![
                conv1x1(&(&b0 / "Conv2d_0a_1x1"), c, r),
                conv(&(&b0 / "Conv2d_1a_3x3"), r, a, (3, 3), 2, Padding::Valid),
            ],
            vec![
                conv1x1(&(&b1 / "Conv2d_0a_1x1"), c, r),
                conv(&(&b1 / "Conv2d_1a_3x3"), r, b, (3, 3), 2, Padding::Valid),
            ],
            vec![
                conv1x1(&(&b2 / "Conv2d_0a_1x1"), c, r),
                conv(&(&b2 / "Conv2d_0b_3x3"), r, b, (3, 3), 1, Padding::Same),
                conv(&(&b2 / "Conv2d_1a_3x3"), b, b, (3, 3), 2, Padding::Valid),
            ],
        ],
    }
}

/// facenet's Inception-ResNet-v1 up to some end point.
#[derive(Debug)]
pub struct InceptionResnetV1 {
    /// `stages[i]` produces `END_POINTS[i]`.
    stages: Vec<Stage>,
    /// Channels of each built end point.
    channels: Vec<i64>,
}

impl InceptionResnetV1 {
    /// Builds the net under `p.InceptionResnetV1.*` up to the deepest of `features` (end point
    /// names); an unknown name is an error listing the valid ones. Weights are Xavier-uniform
    /// (facenet's initializer) until loaded.
    pub fn new<S: AsRef<str>>(
        p: &nn::Path,
        config: &InceptionConfig,
        features: &[S],
    ) -> Result<InceptionResnetV1, ModelError> {
        config.validate()?;
        let mut deepest: Option<usize> = None;
        for f in features {
            let i = end_point_index(f.as_ref())?;
            deepest = Some(deepest.map_or(i, |d| d.max(i)));
        }
        let deepest = deepest.ok_or(ModelError::NoFeatures)?;
        let p = p / "InceptionResnetV1";
        let s = config.stem;
        let (r35, r17, r8) = config.repeats;
        let mut stages = Vec::new();
        let mut channels = Vec::new();
        let mut c = 3; // channels of the map entering the next stage
        for &name in &END_POINTS[..=deepest] {
            let q = &p / name;
            let stage = match name {
                "Conv2d_1a_3x3" => Stage::Conv(conv(&q, c, s[0], (3, 3), 2, Padding::Valid)), // 79×79×32 at 160
                "Conv2d_2a_3x3" => Stage::Conv(conv(&q, c, s[1], (3, 3), 1, Padding::Valid)), // 77×77×32
                "Conv2d_2b_3x3" => Stage::Conv(conv(&q, c, s[2], (3, 3), 1, Padding::Same)), // 77×77×64
                "MaxPool_3a_3x3" => Stage::MaxPool, // 38×38×64
                "Conv2d_3b_1x1" => Stage::Conv(conv(&q, c, s[3], (1, 1), 1, Padding::Valid)), // 38×38×80
                "Conv2d_4a_3x3" => Stage::Conv(conv(&q, c, s[4], (3, 3), 1, Padding::Valid)), // 36×36×192
                "Conv2d_4b_3x3" => Stage::Conv(conv(&q, c, s[5], (3, 3), 2, Padding::Valid)), // 17×17×256
                "Mixed_5a" => Stage::Blocks(repeat(&p, "Repeat", "block35", r35, |b| {
                    block35(b, c, config.block35, 0.17)
                })), // 17×17×256
                "Mixed_6a" => Stage::Reduction(mixed_6a(&q, c, config.mixed_6a)), // 8×8×896
                "Mixed_6b" => Stage::Blocks(repeat(&p, "Repeat_1", "block17", r17, |b| {
                    block17(b, c, config.block17, 0.10)
                })), // 8×8×896
                "Mixed_7a" => Stage::Reduction(mixed_7a(&q, c, config.mixed_7a)), // 3×3×1792
                "Mixed_8a" => Stage::Blocks(repeat(&p, "Repeat_2", "block8", r8, |b| {
                    block8(b, c, config.block8, 0.20, true)
                })), // 3×3×1792
                "Mixed_8b" => {
                    Stage::Blocks(vec![block8(&(&p / "Block8"), c, config.block8, 1.0, false)])
                } // 3×3×1792
                "PrePool" => Stage::Identity,                                     // 3×3×1792
                _ => Stage::AvgPoolFlatten, // PreLogitsFlatten: 1792
            };
            c = match name {
                "Conv2d_1a_3x3" => s[0],
                "Conv2d_2a_3x3" => s[1],
                "Conv2d_2b_3x3" => s[2],
                "Conv2d_3b_1x1" => s[3],
                "Conv2d_4a_3x3" => s[4],
                "Conv2d_4b_3x3" => s[5],
                "Mixed_6a" => config.mixed_6a[3] + config.mixed_6a[2] + c,
                "Mixed_7a" => config.mixed_7a[1] + 2 * config.mixed_7a[2] + c,
                _ => c,
            };
            stages.push(stage);
            channels.push(c);
        }
        Ok(InceptionResnetV1 { stages, channels })
    }

    /// The deepest end point this net computes.
    pub fn deepest(&self) -> &'static str {
        END_POINTS[self.stages.len() - 1]
    }

    /// Channels of a built end point (1792 for PreLogitsFlatten's features).
    pub fn channels(&self, name: &str) -> Result<i64, ModelError> {
        let i = self.built_index(name)?;
        Ok(self.channels[i])
    }

    fn built_index(&self, name: &str) -> Result<usize, ModelError> {
        let i = end_point_index(name)?;
        if i >= self.stages.len() {
            return Err(ModelError::EndPointNotBuilt {
                name: name.to_string(),
                deepest: self.deepest().to_string(),
            });
        }
        Ok(i)
    }

    /// Runs `x` (`[B, 3, H, W]`, already standardised as the caller chooses) through the net in
    /// inference mode and returns the end points `names`, in that order (NCHW maps;
    /// `[B, C]` for PreLogitsFlatten). Stops at the deepest one asked for.
    pub fn forward_features<S: AsRef<str>>(
        &self,
        x: &Tensor,
        names: &[S],
    ) -> Result<Vec<Tensor>, ModelError> {
        self.forward_features_t(x, names, false)
    }

    /// The deepest end point this net was built to, in training (`train`: batch statistics,
    /// moving averages updated in place) or inference mode.
    pub fn forward_end_point_t(&self, x: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let mut out = self.forward_features_t(x, &[self.deepest()], train)?;
        Ok(out.remove(0))
    }

    fn forward_features_t<S: AsRef<str>>(
        &self,
        x: &Tensor,
        names: &[S],
        train: bool,
    ) -> Result<Vec<Tensor>, ModelError> {
        let size = x.size();
        if size.len() != 4 || size[1] != 3 || size[0] < 1 {
            return Err(ModelError::InputShape {
                what: "face-net",
                expected: "[batch, 3, height, width]".into(),
                got: size,
            });
        }
        let wanted = names
            .iter()
            .map(|n| self.built_index(n.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(&last) = wanted.iter().max() else {
            return Ok(Vec::new());
        };
        check_input_side(size[2], size[3], last)?;
        let mut outputs: Vec<Option<Tensor>> = (0..=last).map(|_| None).collect();
        let mut net = x.shallow_clone();
        for (i, stage) in self.stages[..=last].iter().enumerate() {
            net = net.apply_t(stage, train);
            if wanted.contains(&i) {
                outputs[i] = Some(net.shallow_clone());
            }
        }
        Ok(wanted
            .iter()
            .filter_map(|&i| outputs[i].as_ref().map(Tensor::shallow_clone))
            .collect())
    }
}

/// Errors when a `height`×`width` input shrinks below a 3×3 VALID window before end point
/// `END_POINTS[last]`.
fn check_input_side(height: i64, width: i64, last: usize) -> Result<(), ModelError> {
    for side in [height, width] {
        let mut n = side;
        for (i, op) in SIDES[..=last].iter().enumerate() {
            n = match op {
                Side::Keep | Side::Pool => n,
                _ if n < 3 => 0,
                Side::Valid3Stride2 => (n - 3) / 2 + 1,
                Side::Valid3Stride1 => n - 2,
            };
            if n < 1 {
                return Err(ModelError::InputTooSmall {
                    height,
                    width,
                    end_point: END_POINTS[i].to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    fn input(side: i64) -> Tensor {
        tch::manual_seed(0);
        Tensor::randn([1, 3, side, side], (Kind::Float, Device::Cpu))
    }

    fn check_end_point_shapes(config: &InceptionConfig, expected: &[(&str, &[i64])]) {
        let vs = VarStore::new(Device::Cpu);
        let net = InceptionResnetV1::new(&vs.root(), config, END_POINTS).unwrap();
        let features = tch::no_grad(|| net.forward_features(&input(160), END_POINTS)).unwrap();
        let got: Vec<(&str, Vec<i64>)> = END_POINTS
            .iter()
            .copied()
            .zip(features.iter().map(|f| f.size()[1..].to_vec()))
            .collect();
        let expected: Vec<(&str, Vec<i64>)> =
            expected.iter().map(|(n, s)| (*n, s.to_vec())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn full_net_end_points_at_160_px_match_facenet() {
        // models.md §3.1, as C×H×W.
        check_end_point_shapes(
            &InceptionConfig::facenet(),
            &[
                ("Conv2d_1a_3x3", &[32, 79, 79]),
                ("Conv2d_2a_3x3", &[32, 77, 77]),
                ("Conv2d_2b_3x3", &[64, 77, 77]),
                ("MaxPool_3a_3x3", &[64, 38, 38]),
                ("Conv2d_3b_1x1", &[80, 38, 38]),
                ("Conv2d_4a_3x3", &[192, 36, 36]),
                ("Conv2d_4b_3x3", &[256, 17, 17]),
                ("Mixed_5a", &[256, 17, 17]),
                ("Mixed_6a", &[896, 8, 8]),
                ("Mixed_6b", &[896, 8, 8]),
                ("Mixed_7a", &[1792, 3, 3]),
                ("Mixed_8a", &[1792, 3, 3]),
                ("Mixed_8b", &[1792, 3, 3]),
                ("PrePool", &[1792, 3, 3]),
                ("PreLogitsFlatten", &[1792]),
            ],
        );
    }

    #[test]
    fn mini_net_end_points_at_160_px() {
        check_end_point_shapes(
            &InceptionConfig::mini(),
            &[
                ("Conv2d_1a_3x3", &[4, 79, 79]),
                ("Conv2d_2a_3x3", &[4, 77, 77]),
                ("Conv2d_2b_3x3", &[8, 77, 77]),
                ("MaxPool_3a_3x3", &[8, 38, 38]),
                ("Conv2d_3b_1x1", &[8, 38, 38]),
                ("Conv2d_4a_3x3", &[12, 36, 36]),
                ("Conv2d_4b_3x3", &[16, 17, 17]),
                ("Mixed_5a", &[16, 17, 17]),
                ("Mixed_6a", &[44, 8, 8]),
                ("Mixed_6b", &[44, 8, 8]),
                ("Mixed_7a", &[72, 3, 3]),
                ("Mixed_8a", &[72, 3, 3]),
                ("Mixed_8b", &[72, 3, 3]),
                ("PrePool", &[72, 3, 3]),
                ("PreLogitsFlatten", &[72]),
            ],
        );
    }

    #[test]
    fn variables_are_named_after_facenets_tf_scopes() {
        let vs = VarStore::new(Device::Cpu);
        let _net = InceptionResnetV1::new(
            &vs.root(),
            &InceptionConfig::facenet(),
            &["PreLogitsFlatten"],
        )
        .unwrap();
        let vars = vs.variables();
        let shape = |n: &str| {
            vars.get(n)
                .map(|t| t.size())
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(
            shape("InceptionResnetV1.Conv2d_1a_3x3.weights"),
            [32, 3, 3, 3]
        );
        assert_eq!(
            shape("InceptionResnetV1.Conv2d_1a_3x3.BatchNorm.beta"),
            [32]
        );
        assert_eq!(
            shape("InceptionResnetV1.Repeat.block35_1.Branch_1.Conv2d_0b_3x3.weights"),
            [32, 32, 3, 3]
        );
        assert_eq!(
            shape("InceptionResnetV1.Repeat.block35_5.Conv2d_1x1.weights"),
            [256, 96, 1, 1]
        );
        assert_eq!(
            shape("InceptionResnetV1.Repeat.block35_5.Conv2d_1x1.biases"),
            [256]
        );
        assert_eq!(
            shape("InceptionResnetV1.Mixed_6a.Branch_1.Conv2d_1a_3x3.weights"),
            [256, 192, 3, 3]
        );
        assert_eq!(
            shape("InceptionResnetV1.Repeat_1.block17_10.Branch_1.Conv2d_0c_7x1.weights"),
            [128, 128, 7, 1]
        );
        assert_eq!(
            shape("InceptionResnetV1.Mixed_7a.Branch_2.Conv2d_0b_3x3.BatchNorm.moving_variance"),
            [256]
        );
        assert_eq!(
            shape("InceptionResnetV1.Repeat_2.block8_5.Branch_1.Conv2d_0b_1x3.weights"),
            [192, 192, 1, 3]
        );
        assert_eq!(
            shape("InceptionResnetV1.Block8.Conv2d_1x1.weights"),
            [1792, 384, 1, 1]
        );
        // The up-projections are the only biases and have no BN.
        assert!(vars
            .keys()
            .filter(|n| n.ends_with("biases"))
            .all(|n| n.contains("Conv2d_1x1.biases")));
        assert!(!vars
            .keys()
            .any(|n| n.contains("Conv2d_1x1.BatchNorm") && !n.contains("Branch_0")));
        assert!(!vars
            .keys()
            .any(|n| n.contains("gamma") || n.contains("Bottleneck")));
    }

    #[test]
    fn every_variable_maps_to_the_end_point_that_owns_it() {
        let vs = VarStore::new(Device::Cpu);
        let _net =
            InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Mixed_8b"]).unwrap();
        for name in vs.variables().keys() {
            assert!(end_point_of_variable(name).is_some(), "{name}");
        }
        assert_eq!(
            end_point_of_variable("InceptionResnetV1.Conv2d_2a_3x3.BatchNorm.beta"),
            Some("Conv2d_2a_3x3")
        );
        assert_eq!(
            end_point_of_variable("InceptionResnetV1.Repeat_1.block17_1.Conv2d_1x1.biases"),
            Some("Mixed_6b")
        );
        assert_eq!(
            end_point_of_variable("InceptionResnetV1.Block8.Conv2d_1x1.biases"),
            Some("Mixed_8b")
        );
        assert_eq!(
            end_point_of_variable("InceptionResnetV1.Bottleneck.weights"),
            None
        );
        assert_eq!(end_point_of_variable("Logits.weights"), None);
    }

    #[test]
    fn net_is_built_only_up_to_the_deepest_feature() {
        let vs = VarStore::new(Device::Cpu);
        let net = InceptionResnetV1::new(
            &vs.root(),
            &InceptionConfig::facenet(),
            &["Conv2d_2a_3x3", "Conv2d_1a_3x3"],
        )
        .unwrap();
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names.len(), 8);
        assert!(names
            .iter()
            .all(|n| n.starts_with("InceptionResnetV1.Conv2d_1a_3x3.")
                || n.starts_with("InceptionResnetV1.Conv2d_2a_3x3.")));
        assert_eq!(net.deepest(), "Conv2d_2a_3x3");
        let err = net
            .forward_features(&input(160), &["Conv2d_2b_3x3"])
            .unwrap_err();
        assert_eq!(err.to_string(), "end point `Conv2d_2b_3x3` is deeper than this net was built for (deepest built: `Conv2d_2a_3x3`); build it with `Conv2d_2b_3x3` among its features");
        // Features come back in the order asked, repeats allowed.
        let f = net
            .forward_features(
                &input(160),
                &["Conv2d_2a_3x3", "Conv2d_1a_3x3", "Conv2d_2a_3x3"],
            )
            .unwrap();
        assert_eq!(
            f.iter().map(|t| t.size()[2]).collect::<Vec<_>>(),
            [77, 79, 77]
        );
    }

    #[test]
    fn unknown_end_point_lists_the_valid_names() {
        let vs = VarStore::new(Device::Cpu);
        let err = InceptionResnetV1::new(
            &vs.root(),
            &InceptionConfig::mini(),
            &["Conv2d_1a_3x3", "conv2d_1a"],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`conv2d_1a` is not an Inception-ResNet-v1 end point; valid names: `Conv2d_1a_3x3`, `Conv2d_2a_3x3`, `Conv2d_2b_3x3`, `MaxPool_3a_3x3`, `Conv2d_3b_1x1`, `Conv2d_4a_3x3`, `Conv2d_4b_3x3`, `Mixed_5a`, `Mixed_6a`, `Mixed_6b`, `Mixed_7a`, `Mixed_8a`, `Mixed_8b`, `PrePool`, `PreLogitsFlatten`"
        );
        let none: [&str; 0] = [];
        assert!(matches!(
            InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &none),
            Err(ModelError::NoFeatures)
        ));
    }

    #[test]
    fn too_small_input_names_the_end_point_it_cannot_reach() {
        let vs = VarStore::new(Device::Cpu);
        let net =
            InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Mixed_7a"]).unwrap();
        let err = net.forward_features(&input(16), &["Mixed_7a"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a 16×16 input is too small for Inception-ResNet-v1 end point `Conv2d_4a_3x3`"
        );
        assert_eq!(
            net.forward_features(&input(16), &["Conv2d_2b_3x3"])
                .unwrap()[0]
                .size(),
            [1, 8, 5, 5]
        );
    }

    #[test]
    fn blocks_use_relu_except_the_last_block8() {
        let vs = VarStore::new(Device::Cpu);
        let net =
            InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Mixed_8b"]).unwrap();
        let f = net
            .forward_features(&input(160), &["Mixed_5a", "Mixed_8a", "Mixed_8b"])
            .unwrap();
        assert!(f[0].min().double_value(&[]) >= 0.0);
        assert!(f[1].min().double_value(&[]) >= 0.0);
        assert!(
            f[2].min().double_value(&[]) < 0.0,
            "Mixed_8b has no activation"
        );
    }
}
