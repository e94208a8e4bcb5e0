//! Stage `train-facenet`: facenet's softmax recipe (src/train_softmax.py) — identity
//! classification over an identity-folder dataset — for Inception-ResNet-v1 or its stem up to a
//! chosen end point, so `train-vae`'s perceptual loss can come from a net trained here instead
//! of random weights or a downloaded checkpoint. See issue 8.
//!
//! The net is `models::inception_resnet_v1` built up to `end_point`, with facenet's variable
//! names. The head follows train_softmax.py: the end point's map averaged over space (what
//! `PreLogitsFlatten` does to the full net), dropout (`keep_probability`), the `Bottleneck` FC
//! (no bias, BN with beta) to `bottleneck_size`, and `Logits` (weights + biases) over the
//! identities; loss = mean softmax cross-entropy + `weight_decay`·Σ‖w‖²/2 over every conv and FC
//! `weights` (slim's `l2_regularizer`). Training-mode BN (moving averages updated in place, decay
//! 0.995), TF's Adam, lr = init·factor^floor((step − 1)/decay_steps) (facenet's staircase
//! `exponential_decay`), 160 centre crops, optional random left-right flips.
//!
//! Different from the original, and why:
//! - Labels are the identity folders in sorted order (`IdentityFolders`), identities with no
//!   usable image dropped. `held_out_per_identity` images (the last in sorted order) of every
//!   identity with more than that are kept out of training; their accuracy, with the saved net
//!   in inference mode, is the honest measure in `metrics.json`.
//! - No random crop, no center loss, no prelogits norm loss (train_softmax.py's defaults are
//!   off for all but the crop; the crop would need a second decode path).
//! - BN recalibration: after a short run, moving averages with decay 0.995 still remember
//!   their initial 0/1 (after 300 steps 22 % of the weight), and `train-vae` runs the net in
//!   inference mode. So the moving statistics are recomputed at the end from
//!   `bn_recalibration_batches` training batches with the final weights (an equally weighted
//!   average; Wu & Johnson's "precise BN"). `0` keeps them as trained.
//! - Flips and dropout draw from torch's generator seeded by (seed, step), and the data order is
//!   a function of (seed, step): a resumed run equals an uninterrupted one on the CPU with fixed
//!   threads, as `train-vae`.
//!
//! Input: `perceptual_input` says what the net is fed, from the crop normalised with
//! `normalization` — the same two settings `train-vae` has, and they must agree there:
//! `dataset` (the default, what train_vae.py feeds its net), `prewhiten` (facenet's 2017
//! models) or `fixed` (2018 models). `face_net.json` records them and `train-vae` warns when
//! its own differ.
//!
//! Artifact: `face_net.safetensors` (exactly the `InceptionResnetV1.*` variables up to
//! `end_point`, moving statistics included, no head: what `from.perceptual` loads),
//! `face_net.json`, `identities.txt` (class index → folder), `metrics.jsonl` (one line per
//! step) and its TensorBoard event file, `metrics.json`, `loss_curve.png`,
//! `checkpoints/step-N/` (last 3, with the head).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vaepipe_engine::stage::{ParamIssue, Role, Stage, StageCx};

use crate::data::{ImageList, LoaderConfig};
use crate::formats::face_net_spec::FaceNetSpec;
use crate::models::inception_resnet_v1::{
    end_point_index, InceptionConfig, InceptionResnetV1, END_POINTS,
};
use crate::models::layers::BN_MOMENTUM;
use crate::models::preprocess::{Normalization, PerceptualInput};
use crate::models::softmax_head::Head;
use crate::stages::params;
use crate::train::adam::{AdamConfig, TfAdam};
use crate::train::checkpoint::{Checkpoints, TrainState};
use crate::train::driver::{self, LoopPlan, StepRecord, TrainingTask};

pub struct TrainFacenet;

/// train_softmax.py's arguments that matter here, with facenet's defaults where they fit a
/// stem trained for minutes (the demo's values live in `experiments/demo.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainFacenetParams {
    /// The deepest Inception-ResNet-v1 end point trained (facenet's `end_points` names); the
    /// head reads it. Must be at least as deep as the deepest `loss_features` layer of a
    /// `train-vae` that loads the result. `PreLogitsFlatten` trains the whole net.
    pub end_point: String,
    /// Width of the `Bottleneck` embedding between the pooled features and the logits
    /// (`--embedding_size`; 128 in facenet's 2017 models).
    pub bottleneck_size: usize,
    /// Training steps (`--max_nrof_epochs` × `--epoch_size`, counted in steps).
    pub max_steps: u64,
    /// Images per step (`--batch_size`).
    pub batch_size: usize,
    /// Side of the centre crop taken from each image (`--image_size`), as `train-vae`'s.
    pub input_image_size: usize,
    /// Adam's initial learning rate (`--learning_rate`).
    pub learning_rate: f64,
    /// Steps between learning-rate decays (`--learning_rate_decay_epochs`, in steps).
    pub learning_rate_decay_steps: u64,
    /// Factor applied at each decay (`--learning_rate_decay_factor`; 1 keeps it constant).
    pub learning_rate_decay_factor: f64,
    /// L2 factor on every conv and FC weight (`--weight_decay`; facenet's recipes use 5e-4).
    pub weight_decay: f64,
    /// Dropout keep probability before the bottleneck (`--keep_probability`).
    pub keep_probability: f64,
    /// Flip each training image left-right with probability 1/2 (`--random_flip`), drawn from
    /// (seed, step).
    pub random_flip: bool,
    /// Images per identity (the last, in sorted order) kept out of training for the held-out
    /// accuracy; identities with no more images than this are all trained on. 0: none.
    pub held_out_per_identity: usize,
    /// Training batches whose statistics replace the BN moving averages at the end (see the
    /// module docs); 0 keeps the averages as trained.
    pub bn_recalibration_batches: u64,
    /// Checkpoint every this many steps (and at the end).
    pub save_every: u64,
    /// What the net is fed: `dataset`, `prewhiten` or `fixed` (see `train-vae`'s option of the
    /// same name, which must match).
    pub perceptual_input: PerceptualInput,
    /// Per-channel mean/std the crops are normalised with (train-vae's; matters for
    /// `perceptual_input = "dataset"`).
    pub normalization: Normalization,
}

impl Default for TrainFacenetParams {
    fn default() -> Self {
        TrainFacenetParams {
            end_point: "Conv2d_4b_3x3".into(),
            bottleneck_size: 128,
            max_steps: 2000,
            batch_size: 90,
            input_image_size: 160,
            learning_rate: 0.01,
            learning_rate_decay_steps: 1,
            learning_rate_decay_factor: 1.0,
            weight_decay: 5e-4,
            keep_probability: 1.0,
            random_flip: true,
            held_out_per_identity: 2,
            bn_recalibration_batches: 20,
            save_every: 500,
            perceptual_input: PerceptualInput::default(),
            normalization: Normalization::default(),
        }
    }
}

impl TrainFacenetParams {
    /// lr = init · factor^floor((step − 1) / decay_steps), TF's staircase decay with its
    /// pre-increment global step (as `train-vae`).
    pub fn learning_rate_at(&self, step: u64) -> f64 {
        crate::train::staircase_learning_rate(
            self.learning_rate,
            self.learning_rate_decay_steps,
            self.learning_rate_decay_factor,
            step,
        )
    }
}

impl Stage for TrainFacenet {
    const KIND: &'static str = "train-facenet";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "trains Inception-ResNet-v1 (or its stem) to classify identities, for train-vae's perceptual loss";
    type Params = TrainFacenetParams;

    fn roles() -> &'static [Role] {
        &[
            Role {
                name: "data",
                required: true,
                doc: "identity folders (CASIA layout): one folder of face images per person",
            },
            Role {
                name: "check",
                required: false,
                doc: "an align-check stage whose excluded files are skipped",
            },
        ]
    }

    fn validate(p: &Self::Params) -> Vec<ParamIssue> {
        let mut issues = Vec::new();
        let issue = |path: &str, message: String, help: Option<String>| ParamIssue {
            path: path.into(),
            message,
            help,
        };
        if end_point_index(&p.end_point).is_err() {
            issues.push(issue(
                "end_point",
                format!("`{}` is not an Inception-ResNet-v1 end point", p.end_point),
                Some(format!("valid names: `{}`", END_POINTS.join("`, `"))),
            ));
        }
        if p.batch_size == 1 {
            issues.push(issue(
                "batch_size",
                "training-mode BatchNorm needs at least 2 images a batch".into(),
                None,
            ));
        }
        if !(p.weight_decay >= 0.0 && p.weight_decay.is_finite()) {
            issues.push(issue(
                "weight_decay",
                "must be zero or a positive number".into(),
                None,
            ));
        }
        if !(p.keep_probability > 0.0 && p.keep_probability <= 1.0) {
            issues.push(issue(
                "keep_probability",
                "must be in (0, 1]".into(),
                Some("1 disables dropout".into()),
            ));
        }
        issues.extend(params::training_bounds(&params::TrainingBounds {
            counts: &[
                ("max_steps", p.max_steps as usize),
                ("batch_size", p.batch_size),
                ("bottleneck_size", p.bottleneck_size),
                ("save_every", p.save_every as usize),
                (
                    "learning_rate_decay_steps",
                    p.learning_rate_decay_steps as usize,
                ),
            ],
            batch_size: p.batch_size,
            input_image_size: p.input_image_size,
            learning_rate: ("learning_rate", p.learning_rate),
            width: ("bottleneck_size", p.bottleneck_size, "numbers an embedding"),
        }));
        issues
    }

    fn uses_accelerator(_: &Self::Params) -> bool {
        true
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        let device = crate::device::for_stage(cx)?;
        let data = cx.require_input("data")?.to_path_buf();
        let all = ImageList::open(&data, cx.input("check"))?;
        let (identities, labels) = identity_labels(&all.relative)
            .with_context(|| format!("dataset {}", data.display()))?;
        if identities.len() < 2 {
            bail!(
                "dataset {} has {} identity folder with images; identity classification needs at least 2",
                data.display(),
                identities.len()
            );
        }
        let (train, held_out) = split_held_out(&all, &labels, p.held_out_per_identity);
        if train.images.len() < p.batch_size {
            bail!(
                "dataset {} has {} training images (after holding out {} per identity), fewer than one batch (batch_size = {}); lower `batch_size` or `held_out_per_identity`",
                data.display(),
                train.images.len(),
                p.held_out_per_identity,
                p.batch_size
            );
        }
        cx.note("device", crate::device::name(device));
        cx.note("identities", identities.len() as u64);
        cx.note("train_images", train.images.len() as u64);
        cx.note("held_out_images", held_out.images.len() as u64);
        let model = FaceNetModel::new(
            &InceptionConfig::facenet(),
            &p.end_point,
            identities.len() as i64,
            p.bottleneck_size as i64,
            device,
            cx.seed(),
        )?;
        let work = cx.partial_dir().join("work");
        std::fs::create_dir_all(&work)?;
        let mut run = Run {
            p,
            model,
            train,
            held_out,
            identities,
            checkpoints: Checkpoints::new(cx.partial_dir().join("checkpoints")),
            work,
        };
        let history = run.train(cx)?;
        run.finish(cx, &history)
    }
}

/// Class index of every image (its identity folder's rank among the folders that have
/// images), and the folder names in class order. Paths are `<identity>/<file>`.
pub fn identity_labels(relative: &[String]) -> Result<(Vec<String>, Vec<i64>)> {
    let mut names: BTreeMap<&str, i64> = BTreeMap::new();
    for r in relative {
        match r.split_once('/') {
            Some((id, _)) if !id.is_empty() => {
                names.insert(id, 0);
            }
            _ => bail!(
                "`{r}` is not inside an identity folder; train-facenet needs identity folders (CASIA layout: <root>/<identity>/<image>)"
            ),
        }
    }
    for (i, v) in names.values_mut().enumerate() {
        *v = i as i64;
    }
    let labels = relative
        .iter()
        .filter_map(|r| r.split_once('/').map(|(id, _)| names[id]))
        .collect();
    Ok((names.keys().map(|s| s.to_string()).collect(), labels))
}

/// Images with their class labels.
pub struct LabelledImages {
    pub images: ImageList,
    pub labels: Vec<i64>,
}

/// Keeps the last `per_identity` images (sorted order) of every identity that has more than
/// that out of training.
pub fn split_held_out(
    all: &ImageList,
    labels: &[i64],
    per_identity: usize,
) -> (LabelledImages, LabelledImages) {
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    for &l in labels {
        *count.entry(l).or_default() += 1;
    }
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    let empty = || LabelledImages {
        images: ImageList {
            root: all.root.clone(),
            relative: Vec::new(),
        },
        labels: Vec::new(),
    };
    let (mut train, mut held) = (empty(), empty());
    for (r, &l) in all.relative.iter().zip(labels) {
        let n = count[&l];
        let k = seen.entry(l).or_default();
        *k += 1;
        let out = if n > per_identity && *k > n - per_identity {
            &mut held
        } else {
            &mut train
        };
        out.images.relative.push(r.clone());
        out.labels.push(l);
    }
    (train, held)
}

/// One training step's numbers.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    pub loss: f64,
    pub cross_entropy: f64,
    pub accuracy: f64,
}

/// The model side of training: net, head, optimizer. Separate from the loop so unit tests run
/// it on the mini config without a stage context.
pub struct FaceNetModel {
    device: Device,
    vs: VarStore,
    net: InceptionResnetV1,
    head: Head,
    adam: TfAdam,
    /// Every conv and FC `weights` (L2-regularised).
    weights: Vec<Tensor>,
}

impl FaceNetModel {
    pub fn new(
        config: &InceptionConfig,
        end_point: &str,
        classes: i64,
        bottleneck: i64,
        device: Device,
        seed: u64,
    ) -> Result<Self> {
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let net = InceptionResnetV1::new(&vs.root(), config, &[end_point])?;
        let head = Head::new(&vs.root(), net.channels(end_point)?, bottleneck, classes);
        let adam = TfAdam::new(&vs, AdamConfig::default());
        let mut weights: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, t)| n.ends_with(".weights") && t.requires_grad())
            .collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(FaceNetModel {
            device,
            vs,
            net,
            head,
            adam,
            weights: weights.into_iter().map(|(_, t)| t).collect(),
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Logits for a prepared input batch `[B, 3, H, W]`.
    pub fn logits(&self, x: &Tensor, train: bool, keep_probability: f64) -> Result<Tensor> {
        let features = self.net.forward_end_point_t(x, train)?;
        Ok(self.head.forward_t(&features, train, keep_probability))
    }

    /// One Adam step on a prepared batch and its labels.
    pub fn step(
        &mut self,
        x: &Tensor,
        labels: &Tensor,
        lr: f64,
        weight_decay: f64,
        keep_probability: f64,
    ) -> Result<StepStats> {
        let logits = self.logits(x, true, keep_probability)?;
        let cross_entropy = logits.cross_entropy_for_logits(labels);
        let total = if weight_decay > 0.0 {
            let l2 = self
                .weights
                .iter()
                .map(|w| w.square().sum(Kind::Float))
                .fold(Tensor::zeros([], (Kind::Float, self.device)), |a, b| a + b);
            &cross_entropy + l2 * (weight_decay / 2.0)
        } else {
            cross_entropy.shallow_clone()
        };
        self.adam.zero_grad();
        total.backward();
        self.adam.step(lr);
        let accuracy = accuracy(&logits.detach(), labels);
        Ok(StepStats {
            loss: total.double_value(&[]),
            cross_entropy: cross_entropy.double_value(&[]),
            accuracy,
        })
    }

    /// Replaces every BN moving average with the mean of the batch statistics of `batches`
    /// (prepared inputs), the net in training mode with the current weights.
    pub fn recalibrate_bn(
        &mut self,
        batches: impl IntoIterator<Item = Result<Tensor>>,
    ) -> Result<u64> {
        let stats: Vec<Tensor> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.ends_with(".moving_mean") || n.ends_with(".moving_variance"))
            .map(|(_, t)| t)
            .collect();
        tch::no_grad(|| -> Result<u64> {
            for t in &stats {
                let _ = t.shallow_clone().zero_();
            }
            let mut n = 0u64;
            for x in batches {
                let _ = self.logits(&x?, true, 1.0)?;
                n += 1;
            }
            if n == 0 {
                bail!("no batch to recalibrate BatchNorm with");
            }
            // Each batch moved the averages (from 0) by momentum·(batch − average): after n,
            // average = Σ m(1−m)^(n−k)·batch_k, whose weights sum to 1 − (1−m)^n.
            let weight = 1.0 - (1.0 - BN_MOMENTUM).powi(n as i32);
            for t in &stats {
                let _ = t.shallow_clone().g_div_scalar_(weight);
            }
            Ok(n)
        })
    }

    /// The face net's variables (`InceptionResnetV1.*` up to the end point, no head), sorted.
    pub fn face_net_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(n, _)| {
                n.starts_with("InceptionResnetV1.")
                    && !n.starts_with("InceptionResnetV1.Bottleneck.")
            })
            .map(|(n, t)| (n, t.detach().to_device(Device::Cpu)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Share of rows whose arg-max logit is the label.
fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    logits
        .argmax(-1, false)
        .eq_tensor(labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

/// Flips each image of `x` left-right with probability 1/2, drawn on the CPU from torch's
/// generator (seeded per step by the caller) so the draw does not depend on the device.
fn random_flip(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    let flip = Tensor::rand([n], (Kind::Float, Device::Cpu))
        .lt(0.5)
        .to_device(x.device())
        .view([n, 1, 1, 1]);
    x.flip([3]).where_self(&flip, x)
}

/// Per-step history, checkpointed so a resumed run keeps its curves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FacenetHistory {
    pub loss: Vec<f64>,
    pub cross_entropy: Vec<f64>,
    pub accuracy: Vec<f64>,
    pub learning_rate: Vec<f64>,
}

impl FacenetHistory {
    fn truncate(&mut self, steps: usize) {
        for s in [
            &mut self.loss,
            &mut self.cross_entropy,
            &mut self.accuracy,
            &mut self.learning_rate,
        ] {
            s.truncate(steps);
        }
    }
}

/// One `train-facenet` step for the shared training driver; keeps the history it checkpoints.
struct FacenetTask<'r, 'p> {
    run: &'r mut Run<'p>,
    history: FacenetHistory,
}

impl TrainingTask for FacenetTask<'_, '_> {
    fn step(
        &mut self,
        step: u64,
        batch: &vaepipe_facedata::FaceBatch,
        _save: bool,
    ) -> Result<Vec<StepRecord>> {
        let p = self.run.p;
        let lr = p.learning_rate_at(step);
        // Flips and dropout depend only on (seed, step): the driver seeded this step.
        let mut x = self.run.prepare(batch);
        if p.random_flip {
            x = random_flip(&x);
        }
        let labels: Vec<i64> = batch
            .indices
            .iter()
            .map(|&i| self.run.train.labels[i])
            .collect();
        let labels = Tensor::from_slice(&labels).to_device(self.run.model.device);
        let stats = self
            .run
            .model
            .step(&x, &labels, lr, p.weight_decay, p.keep_probability)?;
        if !stats.loss.is_finite() {
            bail!(
                "loss became {} at step {step} (cross-entropy {}); the last good checkpoint is kept — lower `learning_rate` or check the data",
                stats.loss,
                stats.cross_entropy
            );
        }
        self.history.loss.push(stats.loss);
        self.history.cross_entropy.push(stats.cross_entropy);
        self.history.accuracy.push(stats.accuracy);
        self.history.learning_rate.push(lr);
        let metrics = serde_json::json!({
            "loss": stats.loss, "cross_entropy": stats.cross_entropy,
            "accuracy": stats.accuracy, "learning_rate": lr,
        });
        Ok(vec![StepRecord {
            step,
            metrics: metrics.as_object().cloned().unwrap_or_default(),
            message: format!("loss {:.4}  accuracy {:.3}", stats.loss, stats.accuracy),
        }])
    }

    fn save(&mut self, step: u64) -> Result<()> {
        self.run.checkpoint(step, &self.history)
    }
}

/// Steps the final train accuracy is averaged over (a single batch is noisy).
const FINAL_ACCURACY_STEPS: usize = 20;

struct Run<'p> {
    p: &'p TrainFacenetParams,
    model: FaceNetModel,
    train: LabelledImages,
    held_out: LabelledImages,
    identities: Vec<String>,
    checkpoints: Checkpoints,
    work: PathBuf,
}

impl Run<'_> {
    fn loader_config(&self, seed: u64) -> LoaderConfig {
        LoaderConfig {
            crop: self.p.input_image_size,
            normalization: self.p.normalization,
            batch_size: self.p.batch_size,
            seed,
        }
    }

    fn prepare(&self, batch: &vaepipe_facedata::FaceBatch) -> Tensor {
        let x = crate::data::batch_tensor(batch, self.model.device);
        self.p.perceptual_input.prepare(&x, &self.p.normalization)
    }

    fn train(&mut self, cx: &mut StageCx<'_>) -> Result<FacenetHistory> {
        let p = self.p;
        let mut history = FacenetHistory::default();
        let mut start = 0u64;
        if let Some((step, dir)) = self.checkpoints.latest() {
            let state: TrainState<FacenetHistory> =
                Checkpoints::load(&dir, &mut self.model.vs, &mut self.model.adam)?;
            tracing::info!("stage `{}`: resuming from step {step}", cx.stage_name());
            history = state.history;
            history.truncate(step as usize);
            start = step;
        }
        let mut batches = self
            .train
            .images
            .training_batches(&self.loader_config(cx.seed()), start)?;
        let metrics_path = self.work.join("metrics.jsonl");
        let plan = LoopPlan {
            start,
            max_steps: p.max_steps,
            save_every: p.save_every,
            metrics_path: &metrics_path,
        };
        let mut task = FacenetTask { run: self, history };
        driver::drive(cx, &mut task, &mut batches, plan)?;
        Ok(task.history)
    }

    fn checkpoint(&self, step: u64, history: &FacenetHistory) -> Result<()> {
        if step == 0 {
            return Ok(());
        }
        self.checkpoints.save(
            &self.model.vs,
            &self.model.adam,
            &TrainState {
                step,
                history: history.clone(),
            },
        )?;
        Ok(())
    }

    /// Inference-mode accuracy on the held-out images; `None` when there are none.
    fn held_out_accuracy(&self, seed: u64) -> Result<Option<f64>> {
        if self.held_out.images.is_empty() {
            return Ok(None);
        }
        let mut correct = 0.0;
        for batch in self
            .held_out
            .images
            .single_pass(&self.loader_config(seed))?
        {
            let batch = batch?;
            let x = self.prepare(&batch);
            let labels: Vec<i64> = batch
                .indices
                .iter()
                .map(|&i| self.held_out.labels[i])
                .collect();
            let labels = Tensor::from_slice(&labels).to_device(self.model.device);
            let logits = tch::no_grad(|| self.model.logits(&x, false, 1.0))?;
            correct += accuracy(&logits, &labels) * batch.indices.len() as f64;
        }
        Ok(Some(correct / self.held_out.images.len() as f64))
    }

    /// Recalibrates BN, measures, and moves the run's files into the artifact.
    fn finish(mut self, cx: &mut StageCx<'_>, history: &FacenetHistory) -> Result<()> {
        let p = self.p;
        let out = cx.out_dir().to_path_buf();
        if p.bn_recalibration_batches > 0 {
            // The schedule's batches after the last step: deterministic, and the same after a
            // resume.
            let mut batches = self
                .train
                .images
                .training_batches(&self.loader_config(cx.seed()), p.max_steps)?;
            let inputs: Vec<Result<Tensor>> = (0..p.bn_recalibration_batches)
                .map(|_| batches.next_batch().map(|b| self.prepare(&b)))
                .collect();
            drop(batches);
            self.model.recalibrate_bn(inputs)?;
        }
        let held_out = self.held_out_accuracy(cx.seed())?;
        Tensor::write_safetensors(
            &self.model.face_net_tensors(),
            out.join(FaceNetSpec::WEIGHTS),
        )
        .context("failed to save the trained face net")?;
        let spec = FaceNetSpec {
            end_point: p.end_point.clone(),
            perceptual_input: p.perceptual_input,
            normalization: p.normalization,
            input_image_size: p.input_image_size,
            identities: self.identities.len(),
        };
        std::fs::write(
            out.join(FaceNetSpec::SPEC),
            serde_json::to_vec_pretty(&spec)?,
        )?;
        std::fs::write(
            out.join("identities.txt"),
            self.identities
                .iter()
                .map(|n| format!("{n}\n"))
                .collect::<String>(),
        )?;
        crate::formats::plot::loss_curves(
            &[
                ("total loss", &history.loss),
                ("cross-entropy", &history.cross_entropy),
                ("train accuracy", &history.accuracy),
            ],
            &out.join("loss_curve.png"),
        )?;
        let tail = &history.accuracy[history.accuracy.len().saturating_sub(FINAL_ACCURACY_STEPS)..];
        let final_train_accuracy =
            (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64);
        let metrics = serde_json::json!({
            "end_point": p.end_point,
            "identities": self.identities.len(),
            "train_images": self.train.images.len(),
            "held_out_images": self.held_out.images.len(),
            "final_loss": history.loss.last(),
            "final_cross_entropy": history.cross_entropy.last(),
            "final_train_accuracy": final_train_accuracy,
            "final_train_accuracy_steps": tail.len(),
            "held_out_accuracy": held_out,
            "chance_accuracy": 1.0 / self.identities.len() as f64,
        });
        std::fs::write(
            out.join("metrics.json"),
            serde_json::to_vec_pretty(&metrics)?,
        )?;
        if let Some(acc) = held_out {
            cx.note("held_out_accuracy", acc);
        }
        tracing::info!(
            "stage `{}`: train accuracy {:.3} (last {} steps), held-out accuracy {}",
            cx.stage_name(),
            final_train_accuracy.unwrap_or(f64::NAN),
            tail.len(),
            held_out.map_or_else(|| "n/a".to_string(), |a| format!("{a:.3}"))
        );
        for entry in std::fs::read_dir(&self.work)? {
            let entry = entry?;
            std::fs::rename(entry.path(), out.join(entry.file_name()))?;
        }
        let checkpoints = out.join("checkpoints");
        std::fs::create_dir_all(&checkpoints)?;
        for (_, dir) in self.checkpoints.list() {
            if let Some(name) = dir.file_name() {
                std::fs::rename(&dir, checkpoints.join(name))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_identity_folders_in_sorted_order() {
        let relative: Vec<String> = [
            "0000045/001.png",
            "0000045/002.png",
            "0000099/001.png",
            "0000012/007.png",
        ]
        .map(String::from)
        .to_vec();
        let (names, labels) = identity_labels(&relative).unwrap();
        assert_eq!(names, ["0000012", "0000045", "0000099"]);
        assert_eq!(labels, [1, 1, 2, 0]);
        let err = identity_labels(&["flat.png".to_string()]).unwrap_err();
        assert!(err.to_string().contains("identity folders"), "{err}");
    }

    #[test]
    fn held_out_split_keeps_the_last_images_of_identities_with_enough() {
        let relative: Vec<String> = ["a/1", "a/2", "a/3", "b/1", "b/2", "c/1"]
            .map(String::from)
            .to_vec();
        let (_, labels) = identity_labels(&relative).unwrap();
        let all = ImageList {
            root: PathBuf::from("/data"),
            relative,
        };
        let (train, held) = split_held_out(&all, &labels, 1);
        assert_eq!(train.images.relative, ["a/1", "a/2", "b/1", "c/1"]);
        assert_eq!(train.labels, [0, 0, 1, 2]);
        assert_eq!(held.images.relative, ["a/3", "b/2"]);
        assert_eq!(held.labels, [0, 1]);
        let (train, held) = split_held_out(&all, &labels, 0);
        assert_eq!(train.images.len(), 6);
        assert!(held.images.is_empty());
    }

    #[test]
    fn head_reads_the_end_point_and_the_file_holds_only_the_net() {
        let model = FaceNetModel::new(
            &InceptionConfig::mini(),
            "Conv2d_2b_3x3",
            5,
            6,
            Device::Cpu,
            1,
        )
        .unwrap();
        let x = Tensor::randn([3, 3, 24, 24], (Kind::Float, Device::Cpu));
        let logits = model.logits(&x, true, 0.8).unwrap();
        assert_eq!(logits.size(), [3, 5]);
        let vars = model.vs.variables();
        assert_eq!(vars["InceptionResnetV1.Bottleneck.weights"].size(), [6, 8]);
        assert_eq!(vars["Logits.weights"].size(), [5, 6]);
        assert_eq!(vars["Logits.biases"].size(), [5]);
        let names: Vec<String> = model
            .face_net_tensors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names.len(), 3 * 4, "three conv+BN layers, 4 tensors each");
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("InceptionResnetV1.Conv2d_")),
            "{names:?}"
        );
        // PreLogitsFlatten is already pooled: the head takes [B, C].
        let full = FaceNetModel::new(
            &InceptionConfig::mini(),
            "PreLogitsFlatten",
            2,
            4,
            Device::Cpu,
            1,
        )
        .unwrap();
        let x = Tensor::randn([2, 3, 80, 80], (Kind::Float, Device::Cpu));
        assert_eq!(full.logits(&x, false, 1.0).unwrap().size(), [2, 2]);
    }

    /// Four "identities" that differ in colour and texture; a few steps on the mini net learn
    /// to tell them apart, and the saved tensors load into a fresh net by name.
    #[test]
    fn a_few_steps_on_tiny_identities_lower_the_loss_and_the_net_loads_back() {
        let mut model = FaceNetModel::new(
            &InceptionConfig::mini(),
            "Conv2d_2b_3x3",
            4,
            8,
            Device::Cpu,
            3,
        )
        .unwrap();
        tch::manual_seed(5);
        let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 2, 3]);
        let base = Tensor::from_slice(&[1.0f32, -1.0, 0.5, -0.5]).view([4, 1, 1, 1]);
        let make = || {
            let class_mean = base.index_select(0, &labels); // [8, 1, 1, 1]
            let channel = Tensor::from_slice(&[1.0f32, 0.0, -1.0]).view([1, 3, 1, 1]);
            &class_mean * &channel + Tensor::randn([8, 3, 24, 24], (Kind::Float, Device::Cpu)) * 0.3
        };
        let mut losses = Vec::new();
        for _ in 0..30 {
            let stats = model.step(&make(), &labels, 0.01, 5e-4, 1.0).unwrap();
            assert!(stats.loss.is_finite());
            losses.push(stats.cross_entropy);
        }
        let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = losses[25..].iter().sum::<f64>() / 5.0;
        assert!(last < first * 0.7, "cross-entropy {first} → {last}");

        let n = model.recalibrate_bn((0..4).map(|_| Ok(make()))).unwrap();
        assert_eq!(n, 4);
        let mean = &model.vs.variables()["InceptionResnetV1.Conv2d_1a_3x3.BatchNorm.moving_mean"];
        assert!(mean.abs().sum(Kind::Float).double_value(&[]) > 0.0);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FaceNetSpec::WEIGHTS);
        Tensor::write_safetensors(&model.face_net_tensors(), &path).unwrap();
        let mut vs = VarStore::new(Device::Cpu);
        let net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Conv2d_2a_3x3"])
            .unwrap();
        let report = crate::models::weights::load_face_net(&mut vs, &path).unwrap();
        assert_eq!((report.loaded, report.skipped), (8, 4));
        let x = make();
        let a = net
            .forward_features(&x, &["Conv2d_2a_3x3"])
            .unwrap()
            .remove(0);
        let b = model
            .net
            .forward_features(&x, &["Conv2d_2a_3x3"])
            .unwrap()
            .remove(0);
        assert!(
            a.equal(&b),
            "the loaded net computes what the trained one does"
        );
    }
}
