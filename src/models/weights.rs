//! Loading weights into a VarStore by name, reporting every problem by tensor name (candle's
//! `CannotFindTensor` / `UnexpectedShape { expected, got }`): (a) vaepipe's own safetensors
//! (VAE artifacts and checkpoints; face-net files with TF names), and (b) facenet-pytorch's
//! Inception-ResNet-v1 state dict (`torch.save`d `.pt`; timesler/facenet-pytorch
//! `models/inception_resnet_v1.py`, mapping as its `utils/tensorflow2pytorch.py`, models.md §3.3).
//!
//! facenet-pytorch → TF names: `conv2d_1a.conv.weight` → `InceptionResnetV1.Conv2d_1a_3x3.weights`,
//! `….bn.bias` → `….BatchNorm.beta`, `….bn.running_{mean,var}` → `….BatchNorm.moving_{mean,variance}`,
//! `repeat_1.N` → `Repeat.block35_{N+1}`, `repeat_2.N` → `Repeat_1.block17_{N+1}`,
//! `repeat_3.N` → `Repeat_2.block8_{N+1}`, `block8` → `Block8`, block `branchK.J` → `Branch_K.<TF
//! conv scope>`, block `conv2d.{weight,bias}` → `Conv2d_1x1.{weights,biases}`. Layouts already
//! agree (OIHW). `last_linear`, `last_bn`, `logits` (the 512-D bottleneck and classifier, not built
//! here) and `num_batches_tracked` are skipped.
//!
//! BatchNorm `bn.weight` (gamma) has no TF counterpart (slim's `scale=False`); facenet-pytorch's
//! converted models set it to 1. When it is not 1 it is **folded**, exactly for inference-mode
//! BN: γ(x − μ)/σ + β = (γx − γμ)/σ + β, so the conv weights of that output channel and its
//! moving mean are multiplied by γ (variance and beta unchanged); the report names those layers.
//!
//! Reading files is the only IO; nothing is logged — the caller decides what to do with the
//! [`ImportReport`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Kind, TchError, Tensor};

use super::pt_file::{read_state_dict, PtError};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("failed to read weights from {}: {source}", .path.display())]
    Read { path: PathBuf, source: TchError },
    #[error("failed to read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a readable PyTorch state dict: {source}", .path.display())]
    Pt { path: PathBuf, source: PtError },
    #[error("{} has no tensor `{name}`{}", .path.display(), more_missing(.more))]
    CannotFindTensor {
        name: String,
        path: PathBuf,
        more: Vec<String>,
    },
    #[error("tensor `{name}` in {} has shape {got:?}, expected {expected:?}", .path.display())]
    UnexpectedShape {
        name: String,
        path: PathBuf,
        expected: Vec<i64>,
        got: Vec<i64>,
    },
    #[error("{} lacks face-net end point `{end_point}` (no tensor `{name}`); the deepest end point it holds is `{deepest}` — train or import the net up to `{end_point}`, or read only layers up to `{deepest}`", .path.display())]
    MissingEndPoint {
        end_point: String,
        name: String,
        deepest: String,
        path: PathBuf,
    },
    #[error("{}: unknown weights format; expected `.safetensors` or a facenet-pytorch state dict (`.pt`, `.pth`)", .path.display())]
    UnknownFormat { path: PathBuf },
    #[error("failed to copy tensor `{name}`: {source}")]
    Copy { name: String, source: TchError },
}

fn more_missing(more: &[String]) -> String {
    match more.len() {
        0 => String::new(),
        n if n <= 5 => format!(" (nor `{}`)", more.join("`, `")),
        n => format!(" (nor `{}`, and {} more)", more[..5].join("`, `"), n - 5),
    }
}

/// Loads every variable of `vs` from a safetensors file written by `VarStore::save` (or any
/// file using vaepipe's names). Nothing is copied unless every variable is found with its
/// shape; tensors in the file that `vs` lacks are ignored.
pub fn load_safetensors(vs: &mut VarStore, path: &Path) -> Result<(), WeightsError> {
    let tensors = read_safetensors(path)?;
    copy_into(vs, &tensors, path)
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>, WeightsError> {
    let tensors = Tensor::read_safetensors(path).map_err(|source| WeightsError::Read {
        path: path.into(),
        source,
    })?;
    Ok(tensors.into_iter().collect())
}

/// Checks every variable of `vs` against `tensors` (presence, shape), then copies all of them.
pub fn copy_into(
    vs: &mut VarStore,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
) -> Result<(), WeightsError> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let missing: Vec<String> = vars
        .keys()
        .filter(|n| !tensors.contains_key(*n))
        .cloned()
        .collect();
    if let Some((first, more)) = missing.split_first() {
        return Err(WeightsError::CannotFindTensor {
            name: first.clone(),
            path: source.into(),
            more: more.to_vec(),
        });
    }
    for (name, var) in &vars {
        let got = tensors[name].size();
        if got != var.size() {
            return Err(WeightsError::UnexpectedShape {
                name: name.clone(),
                path: source.into(),
                expected: var.size(),
                got,
            });
        }
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let mut var = var.shallow_clone();
            var.f_copy_(&tensors[name])
                .map_err(|source| WeightsError::Copy {
                    name: name.clone(),
                    source,
                })?;
        }
        Ok(())
    })
}

/// What an import did besides loading every variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Source tensors that match no Inception-ResNet-v1 name (a different net, or a typo).
    pub unmatched: Vec<String>,
    /// BN layers (TF scope) whose gamma was not 1 and was folded into the weights.
    pub folded_gamma: Vec<String>,
    /// Variables loaded.
    pub loaded: usize,
    /// Known source tensors not needed: layers deeper than the net was built, the bottleneck,
    /// the classifier, BN counters.
    pub skipped: usize,
}

impl ImportReport {
    /// Nothing worth a warning: every source tensor was understood and no gamma was folded.
    pub fn is_empty(&self) -> bool {
        self.unmatched.is_empty() && self.folded_gamma.is_empty()
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "face-net weights: {} variables loaded, {} known tensors not needed",
            self.loaded, self.skipped
        )?;
        if !self.unmatched.is_empty() {
            write!(
                f,
                "; {} tensors matched no Inception-ResNet-v1 name and were ignored: `{}`",
                self.unmatched.len(),
                self.unmatched.join("`, `")
            )?;
        }
        if !self.folded_gamma.is_empty() {
            write!(
                f,
                "; BatchNorm scale (gamma) ≠ 1 folded into the weights of `{}`",
                self.folded_gamma.join("`, `")
            )?;
        }
        Ok(())
    }
}

/// Loads a face net built by `InceptionResnetV1::new` (variables `InceptionResnetV1.*`) from
/// a `.safetensors` with vaepipe/TF names (`/` or `.` separated, tch layouts) or a
/// facenet-pytorch state dict (`.pt`, `.pth`, `.bin`). Every variable of `vs` must be found.
pub fn load_face_net(vs: &mut VarStore, path: &Path) -> Result<ImportReport, WeightsError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let tensors = read_safetensors(path)?;
            let mut report = ImportReport::default();
            let mut named = HashMap::new();
            for (name, t) in tensors {
                let name = name.replace('/', ".");
                if name.starts_with("InceptionResnetV1.") {
                    named.insert(name, t);
                } else if name.starts_with("Logits.") || name == "global_step" {
                    report.skipped += 1;
                } else {
                    report.unmatched.push(name);
                }
            }
            finish_import(vs, named, report, path)
        }
        Some("pt" | "pth" | "bin") => {
            let tensors = read_pt(path)?;
            import_facenet_pytorch(vs, tensors, path)
        }
        _ => Err(WeightsError::UnknownFormat { path: path.into() }),
    }
}

/// The tensors of a `torch.save`d state dict, in file order (see [`super::pt_file`] for why
/// not `Tensor::loadz_multi`).
pub fn read_pt(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.into(),
        source,
    })?;
    read_state_dict(&bytes).map_err(|source| WeightsError::Pt {
        path: path.into(),
        source,
    })
}

/// Loads facenet-pytorch-named `tensors` (read from `source`) into `vs`, folding non-unit gammas.
pub fn import_facenet_pytorch(
    vs: &mut VarStore,
    tensors: Vec<(String, Tensor)>,
    source: &Path,
) -> Result<ImportReport, WeightsError> {
    let mut report = ImportReport::default();
    let mut named: HashMap<String, Tensor> = HashMap::new();
    let mut gammas: BTreeMap<String, Tensor> = BTreeMap::new();
    for (key, t) in tensors {
        match facenet_pytorch_name(&key) {
            PtName::Var(name) => {
                named.insert(name, t);
            }
            PtName::Gamma(scope) => {
                gammas.insert(scope, t);
            }
            PtName::Skipped => report.skipped += 1,
            PtName::Unknown => report.unmatched.push(key),
        }
    }
    let wanted = vs.variables();
    for (scope, gamma) in gammas {
        let (w, mean) = (
            format!("{scope}.weights"),
            format!("{scope}.BatchNorm.moving_mean"),
        );
        if !wanted.contains_key(&w) {
            report.skipped += 1; // a layer the net was not built to
            continue;
        }
        let gamma = gamma.to_kind(Kind::Float);
        if gamma.allclose(&gamma.ones_like(), 0.0, 1e-6, false) {
            continue;
        }
        if let (Some(wt), Some(mt)) = (named.get(&w), named.get(&mean)) {
            let c = gamma.size()[0];
            if wt.size().first() != Some(&c) || mt.size() != [c] {
                return Err(WeightsError::UnexpectedShape {
                    name: w,
                    path: source.into(),
                    expected: vec![c],
                    got: wt.size(),
                });
            }
            let folded_w = wt.to_kind(Kind::Float) * gamma.view([c, 1, 1, 1]);
            let folded_mean = mt.to_kind(Kind::Float) * &gamma;
            named.insert(w, folded_w);
            named.insert(mean, folded_mean);
            report.folded_gamma.push(scope);
        }
        // Missing conv weights or mean: copy_into names the missing tensor.
    }
    finish_import(vs, named, report, source)
}

fn finish_import(
    vs: &mut VarStore,
    mut named: HashMap<String, Tensor>,
    mut report: ImportReport,
    source: &Path,
) -> Result<ImportReport, WeightsError> {
    let wanted = vs.variables();
    check_end_points(&wanted, &named, source)?;
    let before = named.len();
    named.retain(|name, _| wanted.contains_key(name));
    report.skipped += before - named.len();
    copy_into(vs, &named, source)?;
    report.loaded = wanted.len();
    report.unmatched.sort();
    Ok(report)
}

/// A file that stops before an end point the net was built to (a `train-facenet` artifact
/// trained to a shallower `end_point`) is an error naming that end point, not only a tensor.
fn check_end_points(
    wanted: &HashMap<String, Tensor>,
    named: &HashMap<String, Tensor>,
    source: &Path,
) -> Result<(), WeightsError> {
    use super::inception_resnet_v1::{end_point_index, end_point_of_variable, END_POINTS};
    fn index(name: &str) -> Option<(usize, &str)> {
        end_point_of_variable(name).and_then(|e| end_point_index(e).ok().map(|i| (i, name)))
    }
    let Some((missing, name)) = wanted
        .keys()
        .filter(|n| !named.contains_key(*n))
        .filter_map(|n| index(n))
        .min()
    else {
        return Ok(());
    };
    let deepest = named
        .keys()
        .filter_map(|n| index(n).map(|(i, _)| i))
        .filter(|&i| i < missing)
        .max()
        .map_or_else(|| "none".to_string(), |i| END_POINTS[i].to_string());
    Err(WeightsError::MissingEndPoint {
        end_point: END_POINTS[missing].to_string(),
        name: name.to_string(),
        deepest,
        path: source.into(),
    })
}

/// What a facenet-pytorch state-dict key is in vaepipe's (TF) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtName {
    /// The variable it loads, e.g. `InceptionResnetV1.Conv2d_1a_3x3.BatchNorm.beta`.
    Var(String),
    /// A BatchNorm `bn.weight` of the layer with this TF scope (to fold, see the module doc).
    Gamma(String),
    /// Known, but nothing here loads it (`last_linear`, `last_bn`, `logits`, `num_batches_tracked`).
    Skipped,
    Unknown,
}

/// Maps one facenet-pytorch Inception-ResNet-v1 state-dict key to vaepipe's name.
pub fn facenet_pytorch_name(key: &str) -> PtName {
    let parts: Vec<&str> = key.split('.').collect();
    let Some((&top, rest)) = parts.split_first() else {
        return PtName::Unknown;
    };
    let stem = |scope: &str| basic_conv(&format!("InceptionResnetV1.{scope}"), rest);
    match top {
        "conv2d_1a" => stem("Conv2d_1a_3x3"),
        "conv2d_2a" => stem("Conv2d_2a_3x3"),
        "conv2d_2b" => stem("Conv2d_2b_3x3"),
        "conv2d_3b" => stem("Conv2d_3b_1x1"),
        "conv2d_4a" => stem("Conv2d_4a_3x3"),
        "conv2d_4b" => stem("Conv2d_4b_3x3"),
        "repeat_1" | "repeat_2" | "repeat_3" => {
            let (repeat, block) = match top {
                "repeat_1" => ("Repeat", Block::B35),
                "repeat_2" => ("Repeat_1", Block::B17),
                _ => ("Repeat_2", Block::B8),
            };
            let Some((index, rest)) = rest.split_first() else {
                return PtName::Unknown;
            };
            let Ok(i) = index.parse::<usize>() else {
                return PtName::Unknown;
            };
            block_param(
                &format!("InceptionResnetV1.{repeat}.{}_{}", block.tf_name(), i + 1),
                block,
                rest,
            )
        }
        "block8" => block_param("InceptionResnetV1.Block8", Block::B8, rest),
        "mixed_6a" => {
            let scope = match rest {
                ["branch0", ..] => "Branch_0.Conv2d_1a_3x3",
                ["branch1", "0", ..] => "Branch_1.Conv2d_0a_1x1",
                ["branch1", "1", ..] => "Branch_1.Conv2d_0b_3x3",
                ["branch1", "2", ..] => "Branch_1.Conv2d_1a_3x3",
                _ => return PtName::Unknown,
            };
            let skip = if rest[0] == "branch0" { 1 } else { 2 };
            basic_conv(
                &format!("InceptionResnetV1.Mixed_6a.{scope}"),
                &rest[skip..],
            )
        }
        "mixed_7a" => {
            let scope = match rest {
                [b @ ("branch0" | "branch1"), "0", ..] => {
                    format!("Branch_{}.Conv2d_0a_1x1", &b[6..])
                }
                [b @ ("branch0" | "branch1"), "1", ..] => {
                    format!("Branch_{}.Conv2d_1a_3x3", &b[6..])
                }
                ["branch2", "0", ..] => "Branch_2.Conv2d_0a_1x1".into(),
                ["branch2", "1", ..] => "Branch_2.Conv2d_0b_3x3".into(),
                ["branch2", "2", ..] => "Branch_2.Conv2d_1a_3x3".into(),
                _ => return PtName::Unknown,
            };
            basic_conv(&format!("InceptionResnetV1.Mixed_7a.{scope}"), &rest[2..])
        }
        "last_linear" | "last_bn" | "logits" => PtName::Skipped,
        _ => PtName::Unknown,
    }
}

#[derive(Clone, Copy)]
enum Block {
    B35,
    B17,
    B8,
}

impl Block {
    fn tf_name(self) -> &'static str {
        match self {
            Block::B35 => "block35",
            Block::B17 => "block17",
            Block::B8 => "block8",
        }
    }

    /// TF scopes of `branchK.J` for K ≥ 1.
    fn branch(self, k: &str, j: &str) -> Option<&'static str> {
        Some(match (self, k, j) {
            (_, "branch1", "0") | (Block::B35, "branch2", "0") => "Conv2d_0a_1x1",
            (Block::B35, "branch1" | "branch2", "1") => "Conv2d_0b_3x3",
            (Block::B35, "branch2", "2") => "Conv2d_0c_3x3",
            (Block::B17, "branch1", "1") => "Conv2d_0b_1x7",
            (Block::B17, "branch1", "2") => "Conv2d_0c_7x1",
            (Block::B8, "branch1", "1") => "Conv2d_0b_1x3",
            (Block::B8, "branch1", "2") => "Conv2d_0c_3x1",
            _ => return None,
        })
    }
}

/// A key inside a block35/17/8 with TF scope `scope`.
fn block_param(scope: &str, block: Block, rest: &[&str]) -> PtName {
    match rest {
        ["branch0", leaf @ ..] => basic_conv(&format!("{scope}.Branch_0.Conv2d_1x1"), leaf),
        [k @ ("branch1" | "branch2"), j, leaf @ ..] => match block.branch(k, j) {
            Some(conv) => basic_conv(&format!("{scope}.Branch_{}.{conv}", &k[6..]), leaf),
            None => PtName::Unknown,
        },
        ["conv2d", "weight"] => PtName::Var(format!("{scope}.Conv2d_1x1.weights")),
        ["conv2d", "bias"] => PtName::Var(format!("{scope}.Conv2d_1x1.biases")),
        _ => PtName::Unknown,
    }
}

/// The leaf of a facenet-pytorch `BasicConv2d` (`conv.weight`, `bn.*`) under TF scope `scope`.
fn basic_conv(scope: &str, leaf: &[&str]) -> PtName {
    match leaf {
        ["conv", "weight"] => PtName::Var(format!("{scope}.weights")),
        ["bn", "bias"] => PtName::Var(format!("{scope}.BatchNorm.beta")),
        ["bn", "running_mean"] => PtName::Var(format!("{scope}.BatchNorm.moving_mean")),
        ["bn", "running_var"] => PtName::Var(format!("{scope}.BatchNorm.moving_variance")),
        ["bn", "weight"] => PtName::Gamma(scope.to_string()),
        ["bn", "num_batches_tracked"] => PtName::Skipped,
        _ => PtName::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::inception_resnet_v1::{InceptionConfig, InceptionResnetV1, END_POINTS};
    use crate::models::{Vae, VaeArch};
    use tch::Device;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mini_facenet_pytorch.pt")
    }

    fn check_name(key: &str, expected: &str) {
        assert_eq!(
            facenet_pytorch_name(key),
            PtName::Var(expected.to_string()),
            "{key}"
        );
    }

    #[test]
    fn facenet_pytorch_names_map_to_tf_scopes() {
        check_name(
            "conv2d_1a.conv.weight",
            "InceptionResnetV1.Conv2d_1a_3x3.weights",
        );
        check_name(
            "conv2d_1a.bn.bias",
            "InceptionResnetV1.Conv2d_1a_3x3.BatchNorm.beta",
        );
        check_name(
            "conv2d_3b.bn.running_mean",
            "InceptionResnetV1.Conv2d_3b_1x1.BatchNorm.moving_mean",
        );
        check_name(
            "conv2d_4b.bn.running_var",
            "InceptionResnetV1.Conv2d_4b_3x3.BatchNorm.moving_variance",
        );
        check_name(
            "repeat_1.0.branch0.conv.weight",
            "InceptionResnetV1.Repeat.block35_1.Branch_0.Conv2d_1x1.weights",
        );
        check_name(
            "repeat_1.4.branch2.2.bn.bias",
            "InceptionResnetV1.Repeat.block35_5.Branch_2.Conv2d_0c_3x3.BatchNorm.beta",
        );
        check_name(
            "repeat_1.1.branch1.1.conv.weight",
            "InceptionResnetV1.Repeat.block35_2.Branch_1.Conv2d_0b_3x3.weights",
        );
        check_name(
            "repeat_1.2.conv2d.bias",
            "InceptionResnetV1.Repeat.block35_3.Conv2d_1x1.biases",
        );
        check_name(
            "mixed_6a.branch0.conv.weight",
            "InceptionResnetV1.Mixed_6a.Branch_0.Conv2d_1a_3x3.weights",
        );
        check_name(
            "mixed_6a.branch1.2.bn.running_var",
            "InceptionResnetV1.Mixed_6a.Branch_1.Conv2d_1a_3x3.BatchNorm.moving_variance",
        );
        check_name(
            "repeat_2.9.branch1.2.conv.weight",
            "InceptionResnetV1.Repeat_1.block17_10.Branch_1.Conv2d_0c_7x1.weights",
        );
        check_name(
            "repeat_2.0.branch1.1.conv.weight",
            "InceptionResnetV1.Repeat_1.block17_1.Branch_1.Conv2d_0b_1x7.weights",
        );
        check_name(
            "mixed_7a.branch0.1.conv.weight",
            "InceptionResnetV1.Mixed_7a.Branch_0.Conv2d_1a_3x3.weights",
        );
        check_name(
            "mixed_7a.branch1.0.bn.bias",
            "InceptionResnetV1.Mixed_7a.Branch_1.Conv2d_0a_1x1.BatchNorm.beta",
        );
        check_name(
            "mixed_7a.branch2.1.conv.weight",
            "InceptionResnetV1.Mixed_7a.Branch_2.Conv2d_0b_3x3.weights",
        );
        check_name(
            "repeat_3.4.branch1.1.conv.weight",
            "InceptionResnetV1.Repeat_2.block8_5.Branch_1.Conv2d_0b_1x3.weights",
        );
        check_name(
            "block8.branch1.2.conv.weight",
            "InceptionResnetV1.Block8.Branch_1.Conv2d_0c_3x1.weights",
        );
        check_name(
            "block8.conv2d.weight",
            "InceptionResnetV1.Block8.Conv2d_1x1.weights",
        );
        assert_eq!(
            facenet_pytorch_name("conv2d_2a.bn.weight"),
            PtName::Gamma("InceptionResnetV1.Conv2d_2a_3x3".into())
        );
        for skipped in [
            "last_linear.weight",
            "last_bn.running_mean",
            "logits.bias",
            "conv2d_1a.bn.num_batches_tracked",
        ] {
            assert_eq!(facenet_pytorch_name(skipped), PtName::Skipped, "{skipped}");
        }
        for unknown in [
            "features.0.weight",
            "repeat_1.x.branch0.conv.weight",
            "repeat_2.0.branch2.0.conv.weight",
            "block8.conv2d.bn.bias",
            "",
        ] {
            assert_eq!(facenet_pytorch_name(unknown), PtName::Unknown, "{unknown}");
        }
    }

    fn mini_net(vs: &VarStore) -> InceptionResnetV1 {
        InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), END_POINTS).unwrap()
    }

    #[test]
    fn pt_import_maps_every_name_of_a_mini_state_dict() {
        let mut vs = VarStore::new(Device::Cpu);
        let _net = mini_net(&vs);
        let report = load_face_net(&mut vs, &fixture()).unwrap();
        // 226 tensors: 35 BasicConv2d × 6 (5 loaded-or-gamma + num_batches_tracked),
        // 4 up-projections × 2, last_linear 1, last_bn 5, logits 2.
        assert_eq!(report.unmatched, Vec::<String>::new());
        assert_eq!(report.folded_gamma, ["InceptionResnetV1.Conv2d_2a_3x3"]);
        assert_eq!(report.loaded, vs.variables().len());
        assert_eq!(report.loaded, 35 * 4 + 4 * 2);
        assert_eq!(report.skipped, 35 + 1 + 5 + 2);
        // A value arrives unchanged where no gamma was folded.
        let source: HashMap<String, Tensor> = read_pt(&fixture()).unwrap().into_iter().collect();
        let vars = vs.variables();
        assert!(
            vars["InceptionResnetV1.Repeat_1.block17_1.Branch_1.Conv2d_0b_1x7.weights"]
                .equal(&source["repeat_2.0.branch1.1.conv.weight"])
        );
        assert!(
            vars["InceptionResnetV1.Block8.Conv2d_1x1.biases"].equal(&source["block8.conv2d.bias"])
        );
    }

    #[test]
    fn pt_import_reports_unmatched_names_and_deeper_layers_are_skipped() {
        let mut vs = VarStore::new(Device::Cpu);
        let _net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Conv2d_2b_3x3"])
            .unwrap();
        let mut tensors = read_pt(&fixture()).unwrap();
        tensors.push((
            "features.0.weight".into(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        ));
        let report = import_facenet_pytorch(&mut vs, tensors, Path::new("mini.pt")).unwrap();
        assert_eq!(report.unmatched, ["features.0.weight"]);
        assert_eq!(report.loaded, 12);
        assert_eq!(report.skipped, 226 - 12 - 3); // 3 gammas of the built layers are consumed
        assert!(!report.is_empty());
        assert_eq!(
            report.to_string(),
            "face-net weights: 12 variables loaded, 211 known tensors not needed; 1 tensors matched no Inception-ResNet-v1 name and were ignored: `features.0.weight`; BatchNorm scale (gamma) ≠ 1 folded into the weights of `InceptionResnetV1.Conv2d_2a_3x3`"
        );
    }

    #[test]
    fn folded_gamma_gives_the_same_inference_output_as_pytorch_bn() {
        let mut vs = VarStore::new(Device::Cpu);
        let net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Conv2d_2a_3x3"])
            .unwrap();
        load_face_net(&mut vs, &fixture()).unwrap();
        let src: HashMap<String, Tensor> = read_pt(&fixture()).unwrap().into_iter().collect();
        tch::manual_seed(4);
        let x = Tensor::randn([1, 3, 11, 11], (Kind::Float, Device::Cpu));
        let got = net
            .forward_features(&x, &["Conv2d_2a_3x3"])
            .unwrap()
            .remove(0);
        // PyTorch's BasicConv2d by hand: relu(bn(conv(x))) with gamma.
        let basic = |x: &Tensor, p: &str, stride: i64| {
            let y = x.conv2d(
                &src[&format!("{p}.conv.weight")],
                None::<&Tensor>,
                [stride, stride],
                [0, 0],
                [1, 1],
                1,
            );
            y.batch_norm(
                Some(&src[&format!("{p}.bn.weight")]),
                Some(&src[&format!("{p}.bn.bias")]),
                Some(&src[&format!("{p}.bn.running_mean")]),
                Some(&src[&format!("{p}.bn.running_var")]),
                false,
                0.1,
                1e-3,
                false,
            )
            .relu()
        };
        let expected = basic(&basic(&x, "conv2d_1a", 2), "conv2d_2a", 1);
        assert!(
            got.allclose(&expected, 1e-5, 1e-5, false),
            "max diff {}",
            (got - expected).abs().max()
        );
    }

    #[test]
    fn safetensors_round_trip_and_errors_name_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vae.safetensors");
        tch::manual_seed(7);
        let vs = VarStore::new(Device::Cpu);
        let _vae = Vae::new(&vs.root(), VaeArch::DfcVae, 3).unwrap();
        vs.save(&path).unwrap();

        tch::manual_seed(8);
        let mut other = VarStore::new(Device::Cpu);
        let _vae = Vae::new(&other.root(), VaeArch::DfcVae, 3).unwrap();
        load_safetensors(&mut other, &path).unwrap();
        let a = vs.variables();
        for (name, t) in other.variables() {
            assert!(t.equal(&a[&name]), "{name}");
        }

        let mut wrong_latent = VarStore::new(Device::Cpu);
        let _vae = Vae::new(&wrong_latent.root(), VaeArch::DfcVae, 4).unwrap();
        let err = load_safetensors(&mut wrong_latent, &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "tensor `decoder.Fc_1.weights` in {} has shape [4096, 3], expected [4096, 4]",
                path.display()
            )
        );

        let mut resnet = VarStore::new(Device::Cpu);
        let _vae = Vae::new(&resnet.root(), VaeArch::DfcVaeResnet, 3).unwrap();
        match load_safetensors(&mut resnet, &path).unwrap_err() {
            WeightsError::CannotFindTensor { name, more, .. } => {
                assert_eq!(name, "decoder.Conv2d_1a.BatchNorm.beta");
                assert_eq!(more.len(), resnet.variables().len() - 6 - 1);
            }
            e => panic!("{e}"),
        }

        let err = load_safetensors(&mut other, &dir.path().join("absent.safetensors")).unwrap_err();
        assert!(
            err.to_string().starts_with("failed to read weights from "),
            "{err}"
        );
        let err = load_face_net(&mut other, Path::new("weights.h5")).unwrap_err();
        assert_eq!(err.to_string(), "weights.h5: unknown weights format; expected `.safetensors` or a facenet-pytorch state dict (`.pt`, `.pth`)");
    }

    #[test]
    fn a_file_with_fewer_layers_names_the_missing_end_point_and_more_layers_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("face_net.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let _net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Conv2d_2a_3x3"])
            .unwrap();
        vs.save(&path).unwrap();
        // Deeper than the file: the error names the first end point it lacks.
        let mut deeper = VarStore::new(Device::Cpu);
        let _net =
            InceptionResnetV1::new(&deeper.root(), &InceptionConfig::mini(), &["Conv2d_3b_1x1"])
                .unwrap();
        let err = load_face_net(&mut deeper, &path).unwrap_err();
        assert!(
            matches!(&err, WeightsError::MissingEndPoint { end_point, deepest, .. }
                if end_point == "Conv2d_2b_3x3" && deepest == "Conv2d_2a_3x3"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("lacks face-net end point `Conv2d_2b_3x3`"),
            "{err}"
        );
        // Shallower than the file: extra layers are skipped.
        let mut shallower = VarStore::new(Device::Cpu);
        let _net = InceptionResnetV1::new(
            &shallower.root(),
            &InceptionConfig::mini(),
            &["Conv2d_1a_3x3"],
        )
        .unwrap();
        let report = load_face_net(&mut shallower, &path).unwrap();
        assert_eq!((report.loaded, report.skipped), (4, 4));
        assert!(report.is_empty());
    }

    #[test]
    fn face_net_safetensors_with_tf_slash_names_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("face.safetensors");
        let mut vs = VarStore::new(Device::Cpu);
        let _net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Conv2d_1a_3x3"])
            .unwrap();
        let mut tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n.replace('.', "/"), t.detach().ones_like()))
            .collect();
        tensors.push((
            "InceptionResnetV1/Bottleneck/weights".into(),
            Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
        ));
        tensors.push((
            "Logits/biases".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        ));
        tensors.push((
            "encoder/Fc_1/biases".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        ));
        Tensor::write_safetensors(&tensors, &path).unwrap();
        let report = load_face_net(&mut vs, &path).unwrap();
        assert_eq!(
            report,
            ImportReport {
                unmatched: vec!["encoder.Fc_1.biases".into()],
                folded_gamma: vec![],
                loaded: 4,
                skipped: 2
            }
        );
        assert!(vs
            .variables()
            .values()
            .all(|t| t.eq(1.0).all().int64_value(&[]) == 1));
    }
}
