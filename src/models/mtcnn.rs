//! MTCNN's three networks (Zhang et al., "Joint Face Detection and Alignment using Multi-task
//! Cascaded Convolutional Networks", 2016) as facenet's `src/align/detect_face.py` defines them:
//! P-Net (fully convolutional proposals), R-Net (24-px refinement) and O-Net (48-px output with
//! five landmarks). Variables carry facenet's TF names (`pnet.conv1.weights`, `pnet.PReLU1.alpha`,
//! `rnet.conv4.weights`, `onet.conv6-3.biases`; `/` written `.`), so `det1-3.npy` and
//! facenet-pytorch's `pnet/rnet/onet.pt` import by name.
//!
//! Layout. The nets were trained in Caffe on column-major images, so `detect_face.py` feeds them
//! transposed (`[N, W, H, C]`). Here they take upright NCHW images and the kernels are stored
//! transposed instead: a TF kernel `[kx, ky, in, out]` becomes OIHW `[out, in, ky, kx]`
//! (`permute(3, 2, 1, 0)`, exactly facenet-pytorch's layout), which gives the same outputs at the
//! transposed positions. Before an FC layer the activations are flattened in TF's order over the
//! transposed map (`[N, X, Y, C]`), and FC weights are `[out, in]`. TF's `SAME` max-pooling pads
//! at the end of both axes, which transposes onto itself.

use std::collections::HashMap;
use std::path::Path;

use tch::{nn, Tensor};

use super::weights::{self, WeightsError};

/// The three nets of one MTCNN, built under `pnet`, `rnet` and `onet`.
pub struct Mtcnn {
    pub pnet: PNet,
    pub rnet: RNet,
    pub onet: ONet,
}

impl Mtcnn {
    pub fn new(root: &nn::Path) -> Mtcnn {
        Mtcnn {
            pnet: PNet::new(&(root / "pnet")),
            rnet: RNet::new(&(root / "rnet")),
            onet: ONet::new(&(root / "onet")),
        }
    }
}

/// A convolution with bias, stride 1, no padding (every MTCNN conv is `VALID` or 1×1).
struct Conv {
    weights: Tensor,
    biases: Tensor,
}

impl Conv {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, k: i64) -> Conv {
        Conv {
            weights: p.var("weights", &[c_out, c_in, k, k], nn::Init::Const(0.0)),
            biases: p.var("biases", &[c_out], nn::Init::Const(0.0)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weights, Some(&self.biases), [1, 1], [0, 0], [1, 1], 1)
    }
}

/// A fully connected layer over TF-order flattened input.
struct Fc {
    weights: Tensor,
    biases: Tensor,
}

impl Fc {
    fn new(p: &nn::Path, c_in: i64, c_out: i64) -> Fc {
        Fc {
            weights: p.var("weights", &[c_out, c_in], nn::Init::Const(0.0)),
            biases: p.var("biases", &[c_out], nn::Init::Const(0.0)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weights, Some(&self.biases))
    }
}

/// facenet's PReLU: `relu(x) + alpha * -relu(-x)`, one alpha per channel (dim 1).
struct PRelu {
    alpha: Tensor,
}

impl PRelu {
    fn new(p: &nn::Path, channels: i64) -> PRelu {
        PRelu {
            alpha: p.var("alpha", &[channels], nn::Init::Const(0.0)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut shape = vec![1, -1];
        shape.resize(x.dim(), 1);
        x.relu() - self.alpha.view(shape.as_slice()) * (-x).relu()
    }
}

/// TF `max_pool(k, stride s, padding)`: `SAME` pads the end of each axis with −∞ as TF does
/// (TF puts the smaller half of the padding first; for these kernels that half is 0).
fn max_pool(x: &Tensor, k: i64, s: i64, same: bool) -> Tensor {
    let x = if same {
        let size = x.size();
        let pad = |n: i64| (((n + s - 1) / s - 1) * s + k - n).max(0);
        let (ph, pw) = (pad(size[2]), pad(size[3]));
        x.pad(
            [pw / 2, pw - pw / 2, ph / 2, ph - ph / 2],
            "constant",
            f64::NEG_INFINITY,
        )
    } else {
        x.shallow_clone()
    };
    x.max_pool2d([k, k], [s, s], [0, 0], [1, 1], false)
}

/// TF's flatten of the transposed map: upright `[N, C, Y, X]` → `[N, X·Y·C]` in `[N, X, Y, C]` order.
fn flatten_transposed(x: &Tensor) -> Tensor {
    x.permute([0, 3, 2, 1]).contiguous().flatten(1, -1)
}

/// P-Net: 12×12 receptive field, stride 2. Input `[N, 3, H, W]` normalised `(v − 127.5)/128`.
pub struct PNet {
    conv1: Conv,
    prelu1: PRelu,
    conv2: Conv,
    prelu2: PRelu,
    conv3: Conv,
    prelu3: PRelu,
    conv4_1: Conv,
    conv4_2: Conv,
}

impl PNet {
    pub fn new(p: &nn::Path) -> PNet {
        PNet {
            conv1: Conv::new(&(p / "conv1"), 3, 10, 3),
            prelu1: PRelu::new(&(p / "PReLU1"), 10),
            conv2: Conv::new(&(p / "conv2"), 10, 16, 3),
            prelu2: PRelu::new(&(p / "PReLU2"), 16),
            conv3: Conv::new(&(p / "conv3"), 16, 32, 3),
            prelu3: PRelu::new(&(p / "PReLU3"), 32),
            conv4_1: Conv::new(&(p / "conv4-1"), 32, 2, 1),
            conv4_2: Conv::new(&(p / "conv4-2"), 32, 4, 1),
        }
    }

    /// (box regression `[N, 4, h, w]`, face probability softmax `[N, 2, h, w]`).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = self.prelu1.forward(&self.conv1.forward(x));
        let x = max_pool(&x, 2, 2, true);
        let x = self.prelu2.forward(&self.conv2.forward(&x));
        let x = self.prelu3.forward(&self.conv3.forward(&x));
        let prob = self.conv4_1.forward(&x).softmax(1, tch::Kind::Float);
        (self.conv4_2.forward(&x), prob)
    }
}

/// R-Net: refines 24×24 candidates.
pub struct RNet {
    conv1: Conv,
    prelu1: PRelu,
    conv2: Conv,
    prelu2: PRelu,
    conv3: Conv,
    prelu3: PRelu,
    conv4: Fc,
    prelu4: PRelu,
    conv5_1: Fc,
    conv5_2: Fc,
}

impl RNet {
    pub fn new(p: &nn::Path) -> RNet {
        RNet {
            conv1: Conv::new(&(p / "conv1"), 3, 28, 3),
            prelu1: PRelu::new(&(p / "prelu1"), 28),
            conv2: Conv::new(&(p / "conv2"), 28, 48, 3),
            prelu2: PRelu::new(&(p / "prelu2"), 48),
            conv3: Conv::new(&(p / "conv3"), 48, 64, 2),
            prelu3: PRelu::new(&(p / "prelu3"), 64),
            conv4: Fc::new(&(p / "conv4"), 576, 128),
            prelu4: PRelu::new(&(p / "prelu4"), 128),
            conv5_1: Fc::new(&(p / "conv5-1"), 128, 2),
            conv5_2: Fc::new(&(p / "conv5-2"), 128, 4),
        }
    }

    /// `[N, 3, 24, 24]` → (box regression `[N, 4]`, probability `[N, 2]`).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = self.prelu1.forward(&self.conv1.forward(x));
        let x = max_pool(&x, 3, 2, true);
        let x = self.prelu2.forward(&self.conv2.forward(&x));
        let x = max_pool(&x, 3, 2, false);
        let x = self.prelu3.forward(&self.conv3.forward(&x));
        let x = self
            .prelu4
            .forward(&self.conv4.forward(&flatten_transposed(&x)));
        let prob = self.conv5_1.forward(&x).softmax(1, tch::Kind::Float);
        (self.conv5_2.forward(&x), prob)
    }
}

/// O-Net: the final 48×48 stage, with five landmarks.
pub struct ONet {
    conv1: Conv,
    prelu1: PRelu,
    conv2: Conv,
    prelu2: PRelu,
    conv3: Conv,
    prelu3: PRelu,
    conv4: Conv,
    prelu4: PRelu,
    conv5: Fc,
    prelu5: PRelu,
    conv6_1: Fc,
    conv6_2: Fc,
    conv6_3: Fc,
}

impl ONet {
    pub fn new(p: &nn::Path) -> ONet {
        ONet {
            conv1: Conv::new(&(p / "conv1"), 3, 32, 3),
            prelu1: PRelu::new(&(p / "prelu1"), 32),
            conv2: Conv::new(&(p / "conv2"), 32, 64, 3),
            prelu2: PRelu::new(&(p / "prelu2"), 64),
            conv3: Conv::new(&(p / "conv3"), 64, 64, 3),
            prelu3: PRelu::new(&(p / "prelu3"), 64),
            conv4: Conv::new(&(p / "conv4"), 64, 128, 2),
            prelu4: PRelu::new(&(p / "prelu4"), 128),
            conv5: Fc::new(&(p / "conv5"), 1152, 256),
            prelu5: PRelu::new(&(p / "prelu5"), 256),
            conv6_1: Fc::new(&(p / "conv6-1"), 256, 2),
            conv6_2: Fc::new(&(p / "conv6-2"), 256, 4),
            conv6_3: Fc::new(&(p / "conv6-3"), 256, 10),
        }
    }

    /// `[N, 3, 48, 48]` → (box regression `[N, 4]`, landmarks `[N, 10]`, probability `[N, 2]`).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let x = self.prelu1.forward(&self.conv1.forward(x));
        let x = max_pool(&x, 3, 2, true);
        let x = self.prelu2.forward(&self.conv2.forward(&x));
        let x = max_pool(&x, 3, 2, false);
        let x = self.prelu3.forward(&self.conv3.forward(&x));
        let x = max_pool(&x, 2, 2, true);
        let x = self.prelu4.forward(&self.conv4.forward(&x));
        let x = self
            .prelu5
            .forward(&self.conv5.forward(&flatten_transposed(&x)));
        let prob = self.conv6_1.forward(&x).softmax(1, tch::Kind::Float);
        (self.conv6_2.forward(&x), self.conv6_3.forward(&x), prob)
    }
}

/// The three nets' tensors under facenet's names, from either form vaepipe reads:
/// a `.safetensors` file with those names (what `vaepipe import-weights --what mtcnn` writes),
/// or a directory holding facenet-pytorch's `pnet.pt`, `rnet.pt` and `onet.pt`
/// (`scripts/fetch-mtcnn.sh` unpacks them from the PyPI wheel).
pub fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>, WeightsError> {
    if !path.is_dir() {
        if path.extension().is_some_and(|e| e == "safetensors") {
            let tensors = Tensor::read_safetensors(path).map_err(|source| WeightsError::Read {
                path: path.into(),
                source,
            })?;
            return Ok(tensors
                .into_iter()
                .map(|(n, t)| (n.replace('/', "."), t))
                .collect());
        }
        return Err(WeightsError::UnknownFormat { path: path.into() });
    }
    let mut out = HashMap::new();
    for net in ["pnet", "rnet", "onet"] {
        let file = path.join(format!("{net}.pt"));
        for (key, tensor) in weights::read_pt(&file)? {
            if let Some(name) = facenet_pytorch_name(net, &key) {
                out.insert(name, tensor);
            }
        }
    }
    Ok(out)
}

/// Where `scripts/fetch-mtcnn.sh` unpacks the weights: `$VAEPIPE_MTCNN_WEIGHTS` if set, else
/// `mtcnn/` in vaepipe's cache (`$VAEPIPE_HOME`, `$XDG_CACHE_HOME/vaepipe`, `~/.cache/vaepipe`).
pub fn default_weights_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("VAEPIPE_MTCNN_WEIGHTS") {
        return p.into();
    }
    let cache = std::env::var_os("VAEPIPE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("vaepipe")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vaepipe")
        });
    cache.join("mtcnn")
}

/// Builds the nets under `vs.root()` and loads every variable from `tensors` (all present,
/// right shapes). `source` names the weights in errors.
pub fn load(
    vs: &mut nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
) -> Result<Mtcnn, WeightsError> {
    let nets = Mtcnn::new(&vs.root());
    weights::copy_into(vs, tensors, source)?;
    Ok(nets)
}

/// facenet's name for a facenet-pytorch MTCNN state-dict key of net `net` (`pnet`, `rnet`,
/// `onet`): `conv4_1.weight` → `pnet.conv4-1.weights`, `prelu1.weight` → `pnet.PReLU1.alpha`,
/// `dense5_2.bias` → `rnet.conv5-2.biases`. Layouts already agree (see the module docs).
pub fn facenet_pytorch_name(net: &str, key: &str) -> Option<String> {
    let (layer, param) = key.rsplit_once('.')?;
    let (kind, number) = layer.split_at(layer.find(|c: char| c.is_ascii_digit())?);
    let number = number.replace('_', "-");
    let (scope, param) = match (kind, param) {
        ("prelu", "weight") if net == "pnet" => (format!("PReLU{number}"), "alpha"),
        ("prelu", "weight") => (format!("prelu{number}"), "alpha"),
        ("conv" | "dense", "weight") => (format!("conv{number}"), "weights"),
        ("conv" | "dense", "bias") => (format!("conv{number}"), "biases"),
        _ => return None,
    };
    Some(format!("{net}.{scope}.{param}"))
}

/// facenet's `det1.npy` / `det2.npy` / `det3.npy` tensor (layer `scope`, param `weights`,
/// `biases` or `alpha`, TF layout) in vaepipe's layout: conv kernels `permute(3, 2, 1, 0)`,
/// FC weights transposed.
pub fn from_tf_layout(param: &str, tensor: Tensor) -> Tensor {
    match (param, tensor.dim()) {
        ("weights", 4) => tensor.permute([3, 2, 1, 0]).contiguous(),
        ("weights", 2) => tensor.transpose(0, 1).contiguous(),
        _ => tensor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn facenet_pytorch_keys_map_to_facenet_scopes() {
        assert_eq!(
            facenet_pytorch_name("pnet", "conv4_1.weight").as_deref(),
            Some("pnet.conv4-1.weights")
        );
        assert_eq!(
            facenet_pytorch_name("pnet", "prelu2.weight").as_deref(),
            Some("pnet.PReLU2.alpha")
        );
        assert_eq!(
            facenet_pytorch_name("rnet", "dense5_2.bias").as_deref(),
            Some("rnet.conv5-2.biases")
        );
        assert_eq!(
            facenet_pytorch_name("onet", "prelu5.weight").as_deref(),
            Some("onet.prelu5.alpha")
        );
        assert_eq!(facenet_pytorch_name("onet", "num_batches"), None);
    }

    #[test]
    fn nets_give_the_documented_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Mtcnn::new(&vs.root());
        let (reg, prob) = m
            .pnet
            .forward(&Tensor::zeros([1, 3, 31, 40], (Kind::Float, Device::Cpu)));
        // 31 → 29 → pool SAME 15 → 13 → 11; 40 → 38 → 19 → 17 → 15.
        assert_eq!(reg.size(), vec![1, 4, 11, 15]);
        assert_eq!(prob.size(), vec![1, 2, 11, 15]);
        let (reg, prob) = m
            .rnet
            .forward(&Tensor::zeros([5, 3, 24, 24], (Kind::Float, Device::Cpu)));
        assert_eq!((reg.size(), prob.size()), (vec![5, 4], vec![5, 2]));
        let (reg, pts, prob) = m
            .onet
            .forward(&Tensor::zeros([2, 3, 48, 48], (Kind::Float, Device::Cpu)));
        assert_eq!(
            (reg.size(), pts.size(), prob.size()),
            (vec![2, 4], vec![2, 10], vec![2, 2])
        );
        assert_eq!(vs.variables().len(), 13 + 16 + 21);
    }

    #[test]
    fn same_max_pool_pads_with_negative_infinity_at_the_end() {
        let x = Tensor::from_slice(&[-5.0f32, -1.0, -3.0]).view([1, 1, 1, 3]);
        let y = max_pool(&x, 2, 2, true);
        // windows {-5,-1} and {-3, pad}: the pad must not win.
        assert_eq!(
            Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(),
            vec![-1.0, -3.0]
        );
    }
}
