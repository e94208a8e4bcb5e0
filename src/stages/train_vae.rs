//! Stage `train-vae`: facenet's train_vae.py — a DFC-VAE trained with a perceptual loss from a
//! frozen face-recognition net (or a plain pixel loss) — made resumable and deterministic.
//!
//! Faithful to the original (models.md §1.6, §7): 160 centre crops normalised with the dataset
//! mean/std, TF1-legacy bilinear resize to the VAE size, training-mode BN, reconstruction loss
//! summed over the batch and KL averaged over it, total = alfa·KL + beta·rec, TF's Adam, lr =
//! init·factor^floor(step/decay_steps). Better than the original where choices.md says so:
//! PLAIN works, the data order is a deterministic shuffle, checkpoints carry the optimizer
//! state, and a killed run resumes from its last checkpoint to the same bits.
//!
//! On a GPU a step never waits for the device: losses stay there and are read back every
//! [`LOSS_READ_EVERY`] steps (and before every save), and the next batch is uploaded from
//! pinned memory while the current step runs. `precision` (src/precision) picks fp32 (the
//! original's numerics, the default), tf32 or bf16 autocast.
//!
//! Artifact: `vae.safetensors` + `vae.json` (what `encode`, `render-attribute` and `modify`
//! load), `checkpoints/step-N/` (last 3), `reconstructed_%06d.png` and the batch it
//! reconstructed, `original_%06d.png`, `logs.h5`, `metrics.jsonl` (one line per step), the
//! TensorBoard event file, `loss_curve.png`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vaepipe_engine::stage::{ParamIssue, Role, Stage, StageCx};

use crate::data::{ImageList, LoaderConfig};
use crate::formats::face_net_spec::FaceNetSpec;
use crate::formats::image_grid::{put_images_on_grid, GridScaling};
use crate::formats::logs_h5::LossHistory;
use crate::formats::vae_spec::VaeSpec;
use crate::models::preprocess::{to_nhwc_vec, Normalization, PerceptualInput, Resize};
use crate::models::{self, VaeArch};
use crate::precision::Precision;
use crate::stages::params;
use crate::train::adam::{AdamConfig, TfAdam};
use crate::train::checkpoint::{Checkpoints, TrainState};
use crate::train::driver::{self, LoopPlan, StepRecord, TrainingTask};
use crate::train::metrics::plot_losses;

pub struct TrainVae;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LossType {
    #[default]
    #[serde(rename = "PERCEPTUAL")]
    Perceptual,
    #[serde(rename = "PLAIN")]
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WeightsSource {
    /// From the file `from.perceptual` names (safetensors or a facenet-pytorch `.pt`).
    #[default]
    File,
    /// Random initialisation: only when written explicitly; warned about and recorded.
    Random,
}

/// train_vae.py's arguments, with its defaults (the wiki run's values live in the experiment
/// files, not here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainVaeParams {
    /// `dfc_vae` (64 px), `dfc_vae_resnet` (64 px) or `dfc_vae_large` (128 px).
    pub model: VaeArch,
    /// `PERCEPTUAL`: squared differences of face-net activations; `PLAIN`: of pixels.
    pub reconstruction_loss_type: LossType,
    /// Face-net end points compared by the perceptual loss, by their TF names. A list, or
    /// the original's comma-separated string.
    #[serde(deserialize_with = "params::comma_list")]
    pub loss_features: Vec<String>,
    /// Training steps (`--max_nrof_steps`).
    pub max_steps: u64,
    pub batch_size: usize,
    /// Latent size L (`--latent_var_size`).
    pub latent_size: usize,
    /// Side of the centre crop taken from each image before normalising.
    pub input_image_size: usize,
    pub initial_learning_rate: f64,
    pub learning_rate_decay_steps: u64,
    pub learning_rate_decay_factor: f64,
    /// Weight of the KL term.
    pub alfa: f64,
    /// Weight of the reconstruction term.
    pub beta: f64,
    /// Checkpoint, grid and logs every this many steps (and at the end).
    pub save_every: u64,
    pub resize: Resize,
    pub perceptual_input: PerceptualInput,
    pub weights: WeightsSource,
    pub normalization: Normalization,
    /// How the reconstruction grids become bytes: `clip` (true colours) or `minmax` (the
    /// original's bytescale over the whole canvas).
    pub grid_scaling: GridScaling,
    /// `fp32` (the original's numerics), `tf32` or `bf16` (autocast, FP32 master weights).
    /// Left out of the key when `fp32`, so keys from before the param existed still hold.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

/// On a GPU, losses are read back (a host–device synchronisation) every this many steps.
pub const LOSS_READ_EVERY: usize = 25;

/// How often this run reads losses back: `VAEPIPE_LOSS_READ_EVERY` when set (how a run
/// runs, never in a key; the tests use it to show late reading changes no bit), else
/// [`LOSS_READ_EVERY`] on a GPU and every step on the CPU, where there is nothing to overlap.
fn loss_read_every(device: Device) -> usize {
    std::env::var("VAEPIPE_LOSS_READ_EVERY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(if device.is_cuda() { LOSS_READ_EVERY } else { 1 })
}

impl Default for TrainVaeParams {
    fn default() -> Self {
        TrainVaeParams {
            model: VaeArch::DfcVae,
            reconstruction_loss_type: LossType::Perceptual,
            loss_features: ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"]
                .map(String::from)
                .to_vec(),
            max_steps: 50_000,
            batch_size: 128,
            latent_size: 100,
            input_image_size: 160,
            initial_learning_rate: 0.0005,
            learning_rate_decay_steps: 1,
            learning_rate_decay_factor: 1.0,
            alfa: 1.0,
            beta: 0.5,
            save_every: 500,
            resize: Resize::default(),
            perceptual_input: PerceptualInput::default(),
            weights: WeightsSource::default(),
            normalization: Normalization::default(),
            precision: Precision::Fp32,
            grid_scaling: GridScaling::Clip,
        }
    }
}

impl TrainVaeParams {
    /// lr = init · factor^floor(step / decay_steps), with TF's pre-increment global step.
    pub fn learning_rate(&self, step: u64) -> f64 {
        crate::train::staircase_learning_rate(
            self.initial_learning_rate,
            self.learning_rate_decay_steps,
            self.learning_rate_decay_factor,
            step,
        )
    }
}

impl Stage for TrainVae {
    const KIND: &'static str = "train-vae";
    /// 2: grids always 16×8 tiles, `grid_scaling` param; a TensorBoard event file.
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "trains a DFC-VAE with a perceptual (face-net) or plain pixel loss";
    type Params = TrainVaeParams;

    fn roles() -> &'static [Role] {
        &[
            Role {
                name: "data",
                required: true,
                doc: "a folder of face images: identity folders (CASIA layout) or flat",
            },
            Role {
                name: "check",
                required: false,
                doc: "an align-check stage whose excluded files are skipped",
            },
            Role {
                name: "perceptual",
                required: false,
                doc:
                    "face-net weights: .safetensors, facenet-pytorch .pt, or a train-facenet stage",
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
        if p.reconstruction_loss_type == LossType::Perceptual {
            if p.loss_features.is_empty() {
                issues.push(issue(
                    "loss_features",
                    "a PERCEPTUAL loss needs at least one face-net layer".into(),
                    None,
                ));
            }
            for name in &p.loss_features {
                if !models::inception_resnet_v1::END_POINTS.contains(&name.as_str()) {
                    let valid = models::inception_resnet_v1::END_POINTS.join("`, `");
                    issues.push(issue(
                        "loss_features",
                        format!("`{name}` is not an Inception-ResNet-v1 end point"),
                        Some(format!("valid names: `{valid}`")),
                    ));
                }
            }
        }
        issues.extend(params::training_bounds(&params::TrainingBounds {
            counts: &[
                ("max_steps", p.max_steps as usize),
                ("batch_size", p.batch_size),
                ("latent_size", p.latent_size),
                ("save_every", p.save_every as usize),
                (
                    "learning_rate_decay_steps",
                    p.learning_rate_decay_steps as usize,
                ),
            ],
            batch_size: p.batch_size,
            input_image_size: p.input_image_size,
            learning_rate: ("initial_learning_rate", p.initial_learning_rate),
            width: ("latent_size", p.latent_size, "numbers a latent vector"),
        }));
        issues
    }

    fn uses_accelerator(_: &Self::Params) -> bool {
        true
    }

    /// `max_steps` only ends the loop: the learning rate is a staircase over the step and
    /// `learning_rate_decay_steps`, the data order and the noise are functions of (seed, step),
    /// and a save (the extra one at the last step included) computes nothing. So 400 steps
    /// continued to 1,200 are the bits of 1,200 from scratch (CPU, same threads).
    fn extendable_budget(_: &Self::Params) -> Option<&'static str> {
        Some("max_steps")
    }

    fn warm_start(
        p: &Self::Params,
        source: &vaepipe_engine::WarmSource<'_>,
        partial_dir: &Path,
    ) -> Result<()> {
        warm_start_from_entry(p, source.dir, source.budget, partial_dir)
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        Trainer::new(p, cx)?.train(cx)
    }
}

/// What `finish` writes from the final state rather than moving from the work dir: a warm start
/// leaves them behind (the continued run writes its own).
const FINAL_ONLY: [&str; 5] = [
    VaeSpec::WEIGHTS,
    VaeSpec::SPEC,
    "logs.h5",
    "loss_curve.png",
    "metrics.json",
];

/// Lays out `partial_dir` as a run killed right after step `budget` would have left it: the
/// entry's checkpoints (the newest is step `budget`, with the optimizer state and the loss
/// history) and its work files (grids, `metrics.jsonl`, the TensorBoard file). The grids of
/// step `budget` are left out when it is off the `save_every` schedule, and the off-schedule
/// checkpoint is dropped at the next save (`Trainer::checkpoint`), so the continued entry has
/// the from-scratch run's files.
fn warm_start_from_entry(
    p: &TrainVaeParams,
    entry: &Path,
    budget: u64,
    partial_dir: &Path,
) -> Result<()> {
    let from = entry.join("checkpoints");
    let last = from.join(format!("step-{budget:06}"));
    if !last.join("state.json").is_file() {
        bail!(
            "the entry has no checkpoint of its last step ({})",
            last.display()
        );
    }
    let checkpoints = partial_dir.join("checkpoints");
    for dir in std::fs::read_dir(&from)? {
        let dir = dir?.path();
        if let Some(name) = dir.file_name() {
            let to = checkpoints.join(name);
            std::fs::create_dir_all(&to)?;
            for file in std::fs::read_dir(&dir)? {
                let file = file?.path();
                if let Some(file_name) = file.file_name() {
                    std::fs::copy(&file, to.join(file_name))?;
                }
            }
        }
    }
    let work = partial_dir.join("work");
    std::fs::create_dir_all(&work)?;
    let off_schedule = !budget.is_multiple_of(p.save_every.max(1));
    let last_grids = [
        format!("reconstructed_{budget:06}.png"),
        format!("original_{budget:06}.png"),
    ];
    for file in std::fs::read_dir(entry)? {
        let file = file?;
        let name = file.file_name().to_string_lossy().into_owned();
        let skip = !file.file_type()?.is_file()
            || name == vaepipe_engine::cache::manifest::MANIFEST_FILE
            || FINAL_ONLY.contains(&name.as_str())
            || (off_schedule && last_grids.contains(&name));
        if !skip {
            std::fs::copy(file.path(), work.join(&name))?;
        }
    }
    Ok(())
}

/// When the weights come from `train-facenet` (a `face_net.json` beside them): a
/// `loss_features` layer deeper than the net was trained to is an error naming it, and a
/// `perceptual_input` (or, for `dataset`, a `normalization`) other than the one it was trained
/// with is a warning, recorded in the manifest's notes.
fn check_trained_face_net(p: &TrainVaeParams, path: &Path, cx: &mut StageCx<'_>) -> Result<()> {
    let Some(spec) = FaceNetSpec::beside(path)? else {
        return Ok(());
    };
    let trained = models::inception_resnet_v1::end_point_index(&spec.end_point)?;
    for f in &p.loss_features {
        if models::inception_resnet_v1::end_point_index(f)? > trained {
            bail!(
                "`loss_features` reads end point `{f}`, but {} was trained only up to `{}` (its face_net.json); train it to `end_point = \"{f}\"` or deeper, or drop `{f}` from `loss_features`",
                path.display(),
                spec.end_point
            );
        }
    }
    let mut mismatch = None;
    if spec.perceptual_input != p.perceptual_input {
        mismatch = Some(format!(
            "the face net was trained on `perceptual_input = \"{}\"` input but this stage feeds it `{}`",
            input_name(spec.perceptual_input),
            input_name(p.perceptual_input)
        ));
    } else if p.perceptual_input == PerceptualInput::Dataset
        && spec.normalization != p.normalization
    {
        mismatch = Some(
            "the face net was trained on crops normalised with another `normalization` mean/std than this stage's".into(),
        );
    }
    if let Some(m) = &mismatch {
        tracing::warn!("stage `{}`: {m}; its features will be off", cx.stage_name());
        cx.note("perceptual_input_mismatch", m.as_str());
    }
    cx.note(
        "perceptual_net",
        serde_json::json!({
            "trained_end_point": spec.end_point,
            "perceptual_input": input_name(spec.perceptual_input),
            "identities": spec.identities,
        }),
    );
    Ok(())
}

fn input_name(input: PerceptualInput) -> String {
    serde_json::to_value(input)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The perceptual half of the loss: a frozen face net and the layers it is read at.
struct PerceptualNet {
    _vs: VarStore,
    net: models::inception_resnet_v1::InceptionResnetV1,
    features: Vec<String>,
}

/// The model side of training: the VAE, its optimizer and the loss. Separate from the loop
/// so `vaepipe bench train` times exactly what a training step does.
pub struct StepRunner<'p> {
    p: &'p TrainVaeParams,
    device: Device,
    vs: VarStore,
    vae: models::Vae,
    adam: TfAdam,
    perceptual: Option<PerceptualNet>,
}

struct Trainer<'p> {
    runner: StepRunner<'p>,
    images: ImageList,
    checkpoints: Checkpoints,
    work: PathBuf,
    history: LossHistory,
    /// The reconstructions of a step about to be saved, and the originals (at the VAE's size)
    /// they reconstruct (for the grids).
    pending_grid: Option<(Tensor, Tensor)>,
    /// Losses still on the device: (step, learning rate, [total, rec, kl]).
    pending_losses: Vec<(u64, f64, Tensor)>,
    /// Read losses back when this many are pending (1 on the CPU: nothing to overlap).
    read_every: usize,
    /// The next step's batch, already on its way to the device.
    prefetched: Option<Tensor>,
}

impl<'p> StepRunner<'p> {
    /// Builds the VAE (initialised from `seed`), its optimizer, and for PERCEPTUAL the frozen
    /// face net with `weights` (random when `None`).
    pub fn new(
        p: &'p TrainVaeParams,
        device: Device,
        seed: u64,
        weights: Option<&Path>,
    ) -> Result<Self> {
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let vae = models::Vae::new(&vs.root(), p.model, p.latent_size as i64)?;
        let adam = TfAdam::new(&vs, AdamConfig::default());
        let perceptual = match p.reconstruction_loss_type {
            LossType::Plain => None,
            LossType::Perceptual => {
                let features = p.loss_features.clone();
                let mut face_vs = VarStore::new(device);
                let config = models::inception_resnet_v1::InceptionConfig::facenet();
                let net = models::inception_resnet_v1::InceptionResnetV1::new(
                    &face_vs.root(),
                    &config,
                    &features,
                )?;
                if let Some(path) = weights {
                    let report = models::weights::load_face_net(&mut face_vs, path)?;
                    if !report.is_empty() {
                        tracing::warn!("{report}");
                    }
                }
                face_vs.freeze();
                Some(PerceptualNet {
                    _vs: face_vs,
                    net,
                    features,
                })
            }
        };
        Ok(StepRunner {
            p,
            device,
            vs,
            vae,
            adam,
            perceptual,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The VAE's variables (the parity harness loads the original's initial weights into them).
    pub fn variables_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    pub fn optimizer(&self) -> &TfAdam {
        &self.adam
    }

    pub fn step(
        &mut self,
        originals: &Tensor,
        lr: f64,
        keep_reconstruction: bool,
    ) -> Result<StepLosses> {
        self.step_with_noise(originals, lr, keep_reconstruction, None)
    }

    /// [`StepRunner::step`] with the reparameterisation's ε `[B, L]` given (the parity
    /// harness feeds the original's); `None` draws it from torch's generator.
    pub fn step_with_noise(
        &mut self,
        originals: &Tensor,
        lr: f64,
        keep_reconstruction: bool,
        noise: Option<&Tensor>,
    ) -> Result<StepLosses> {
        let p = self.p;
        // The forward pass, under bf16 autocast when asked; losses are float32 either way.
        let (rec, kl, reconstructed) = p
            .precision
            .autocast(self.device, || self.forward(originals, noise))?;
        let total = &kl * p.alfa + &rec * p.beta;
        self.adam.zero_grad();
        total.backward();
        self.adam.step(lr);
        Ok(StepLosses {
            values: Tensor::stack(&[total.detach(), rec.detach(), kl.detach()], 0),
            reconstructed: keep_reconstruction.then(|| reconstructed.detach()),
        })
    }

    /// Reconstruction loss, KL loss (float32 scalars) and the reconstructions.
    fn forward(
        &self,
        originals: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let p = self.p;
        let size = p.model.image_size();
        let sampling = p.resize.sampling();
        // [B,3,160,160] normalised → [B,3,s,s]
        let images = models::resize::resize(originals, size, size, sampling);
        let (mean, log_var) = self.vae.encode(&images, true);
        let z = match noise {
            Some(eps) => models::reparameterize_with(&mean, &log_var, eps),
            None => models::reparameterize(&mean, &log_var),
        };
        let reconstructed = self.vae.decode(&z, true); // [B,3,s,s], normalised
        let rec = match &self.perceptual {
            Some(net) => {
                let prepare = |x: &Tensor| p.perceptual_input.prepare(x, &p.normalization);
                models::loss::perceptual_loss(
                    &net.net,
                    &prepare(originals),
                    &prepare(&models::resize::resize(
                        &reconstructed,
                        originals.size()[2],
                        originals.size()[3],
                        sampling,
                    )),
                    &net.features,
                )?
            }
            None => {
                let pixels = |x: &Tensor| p.normalization.to_pixels(x);
                models::loss::plain_loss(&pixels(&images), &pixels(&reconstructed))
            }
        };
        let kl = models::loss::kl_loss(&mean.to_kind(Kind::Float), &log_var.to_kind(Kind::Float));
        Ok((
            rec.to_kind(Kind::Float),
            kl,
            reconstructed.to_kind(Kind::Float),
        ))
    }
}

impl<'p> Trainer<'p> {
    fn new(p: &'p TrainVaeParams, cx: &mut StageCx<'_>) -> Result<Self> {
        let device = crate::device::for_stage(cx)?;
        let data = cx.require_input("data")?.to_path_buf();
        let images = ImageList::open(&data, cx.input("check"))?;
        if images.len() < p.batch_size {
            bail!(
                "dataset {} has {} usable images, fewer than one batch (batch_size = {}); lower `batch_size` or add images",
                data.display(),
                images.len(),
                p.batch_size
            );
        }
        let weights = match (p.weights, cx.input("perceptual").map(Path::to_path_buf)) {
            (WeightsSource::File, Some(path)) => {
                // `from.perceptual = "<train-facenet stage>"` names the artifact directory.
                let path = if path.is_dir() { path.join(FaceNetSpec::WEIGHTS) } else { path };
                if p.reconstruction_loss_type == LossType::Perceptual {
                    check_trained_face_net(p, &path, cx)?;
                }
                cx.note("perceptual_weights", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
                Some(path)
            }
            (WeightsSource::File, None) if p.reconstruction_loss_type == LossType::Perceptual => bail!(
                "the PERCEPTUAL loss needs face-net weights: set `from.perceptual` to a weights input, or write `weights = \"random\"` to use an untrained net"
            ),
            _ => {
                if p.reconstruction_loss_type == LossType::Perceptual {
                    tracing::warn!("stage `{}`: the perceptual net has random weights (weights = \"random\")", cx.stage_name());
                    cx.note("perceptual_weights", "random");
                }
                None
            }
        };
        p.precision.apply()?;
        cx.note("precision", p.precision.name());
        let runner = StepRunner::new(p, device, cx.seed(), weights.as_deref())?;
        let work = cx.partial_dir().join("work");
        std::fs::create_dir_all(&work)?;
        let checkpoints = Checkpoints::new(cx.partial_dir().join("checkpoints"));
        cx.note("device", crate::device::name(device));
        cx.note("images", images.len() as u64);
        Ok(Trainer {
            runner,
            images,
            checkpoints,
            work,
            history: LossHistory::default(),
            pending_grid: None,
            pending_losses: Vec::new(),
            read_every: loss_read_every(device),
            prefetched: None,
        })
    }

    fn train(mut self, cx: &mut StageCx<'_>) -> Result<()> {
        let p = self.runner.p;
        let mut start = 0u64;
        if let Some((step, dir)) = self.checkpoints.latest() {
            let state = Checkpoints::load(&dir, &mut self.runner.vs, &mut self.runner.adam)?;
            tracing::info!("stage `{}`: resuming from step {step}", cx.stage_name());
            self.history = state.history;
            self.history.truncate(step as usize);
            start = step;
        }
        let loader_config = LoaderConfig {
            crop: p.input_image_size,
            normalization: p.normalization,
            batch_size: p.batch_size,
            seed: cx.seed(),
        };
        let mut batches = self.images.training_batches(&loader_config, start)?;
        let metrics_path = self.work.join("metrics.jsonl");
        let plan = LoopPlan {
            start,
            max_steps: p.max_steps,
            save_every: p.save_every,
            metrics_path: &metrics_path,
        };
        driver::drive(cx, &mut self, &mut batches, plan)?;
        self.finish(cx)
    }

    fn save_grid(&self, name: &str, step: u64, images: &Tensor) -> Result<()> {
        let p = self.runner.p;
        let pixels = p.normalization.to_pixels(images);
        let s = p.model.image_size() as usize;
        // The original's canvas is always 16×8 tiles (1075×539 at 64 px); a smaller batch
        // leaves the remaining tiles black, which matters under `grid_scaling = "minmax"`.
        let n = (pixels.size()[0] as usize).min(128);
        let nhwc = to_nhwc_vec(&pixels.narrow(0, 0, n as i64))?;
        let canvas = put_images_on_grid(&nhwc, s, 16, 8)?;
        canvas.save_png(
            &self.work.join(format!("{name}_{step:06}.png")),
            p.grid_scaling,
        )
    }

    fn checkpoint(&self, step: u64) -> Result<()> {
        if step == 0 {
            return Ok(());
        }
        // An older checkpoint off the `save_every` schedule (a Ctrl-C's, or the last step of
        // the entry a warm start continued) has served its resume once a newer one exists;
        // dropped, the run keeps the checkpoints an uninterrupted run keeps.
        let every = self.runner.p.save_every.max(1);
        self.checkpoints.save_dropping(
            &self.runner.vs,
            &self.runner.adam,
            &TrainState {
                step,
                history: self.history.clone(),
            },
            |old| old < step && !old.is_multiple_of(every),
        )?;
        Ok(())
    }

    /// Moves the run's files into the artifact: final weights, spec, checkpoints, logs.
    fn finish(self, cx: &mut StageCx<'_>) -> Result<()> {
        let history = &self.history;
        let out = cx.out_dir().to_path_buf();
        let p = self.runner.p;
        self.runner
            .vs
            .save(out.join(VaeSpec::WEIGHTS))
            .context("failed to save the trained VAE")?;
        let spec = VaeSpec {
            model: p.model,
            latent_size: p.latent_size,
            input_image_size: p.input_image_size,
            resize: p.resize,
            normalization: p.normalization,
        };
        std::fs::write(out.join(VaeSpec::SPEC), serde_json::to_vec_pretty(&spec)?)?;
        history.write_h5(&out.join("logs.h5"))?;
        plot_losses(history, &out.join("loss_curve.png"))?;
        for entry in std::fs::read_dir(&self.work)? {
            let entry = entry?;
            let name = entry.file_name();
            if name != "logs.h5" {
                std::fs::rename(entry.path(), out.join(&name))?;
            }
        }
        let checkpoints = out.join("checkpoints");
        std::fs::create_dir_all(&checkpoints)?;
        for (_, dir) in self.checkpoints.list() {
            if let Some(name) = dir.file_name() {
                std::fs::rename(&dir, checkpoints.join(name))?;
            }
        }
        let final_losses = serde_json::json!({
            "final_total_loss": history.total_loss.last(),
            "final_reconstruction_loss": history.reconstruction_loss.last(),
            "final_kl_loss": history.kl_loss.last(),
        });
        std::fs::write(
            out.join("metrics.json"),
            serde_json::to_vec_pretty(&final_losses)?,
        )?;
        Ok(())
    }
}

impl Trainer<'_> {
    /// Reads the pending losses back from the device in one transfer and turns them into
    /// the steps' records; a non-finite loss is an error naming the first step it shows in.
    fn read_losses(&mut self) -> Result<Vec<StepRecord>> {
        if self.pending_losses.is_empty() {
            return Ok(Vec::new());
        }
        let pending = std::mem::take(&mut self.pending_losses);
        let stacked: Vec<Tensor> = pending.iter().map(|(_, _, v)| v.shallow_clone()).collect();
        let values: Vec<f64> = Vec::try_from(
            &Tensor::stack(&stacked, 0)
                .to_device(Device::Cpu)
                .to_kind(Kind::Double)
                .flatten(0, -1),
        )?;
        let mut records = Vec::with_capacity(pending.len());
        for (&(step, lr, _), v) in pending.iter().zip(values.chunks_exact(3)) {
            let (total, rec, kl) = (v[0], v[1], v[2]);
            if !total.is_finite() || !rec.is_finite() || !kl.is_finite() {
                bail!(
                    "loss became {total} at step {step} (rec {rec}, kl {kl}); the last good checkpoint is kept — lower `initial_learning_rate` or check the data"
                );
            }
            self.history.push(total, rec, kl, lr);
            let metrics = serde_json::json!({
                "total_loss": total, "reconstruction_loss": rec,
                "kl_loss": kl, "learning_rate": lr,
            });
            records.push(StepRecord {
                step,
                metrics: metrics.as_object().cloned().unwrap_or_default(),
                message: format!("rec {rec:.4e}  kl {kl:.3}  total {total:.4e}"),
            });
        }
        Ok(records)
    }
}

impl TrainingTask for Trainer<'_> {
    fn step(
        &mut self,
        step: u64,
        batch: &vaepipe_facedata::FaceBatch,
        save: bool,
    ) -> Result<Vec<StepRecord>> {
        let p = self.runner.p;
        let lr = p.learning_rate(step);
        let originals = match self.prefetched.take() {
            Some(uploaded) => uploaded,
            None => crate::data::upload_batch(batch, self.runner.device),
        };
        let losses = self.runner.step(&originals, lr, save)?;
        self.pending_grid = losses.reconstructed.map(|r| {
            let size = p.model.image_size();
            let shown = models::resize::resize(&originals, size, size, p.resize.sampling());
            (r, shown)
        });
        self.pending_losses.push((step, lr, losses.values));
        if self.pending_losses.len() >= self.read_every {
            return self.read_losses();
        }
        Ok(Vec::new())
    }

    fn flush(&mut self) -> Result<Vec<StepRecord>> {
        self.read_losses()
    }

    fn prefetch(&mut self, next: &vaepipe_facedata::FaceBatch) -> Result<()> {
        if self.runner.device.is_cuda() {
            self.prefetched = Some(crate::data::upload_batch(next, self.runner.device));
        }
        Ok(())
    }

    fn save(&mut self, step: u64) -> Result<()> {
        if let Some((reconstructed, originals)) = self.pending_grid.take() {
            self.save_grid("reconstructed", step, &reconstructed)?;
            self.save_grid("original", step, &originals)?;
        }
        if step > 0 {
            self.history.write_h5(&self.work.join("logs.h5"))?;
        }
        self.checkpoint(step)
    }

    fn saved_images(&self, step: u64) -> Vec<(String, PathBuf)> {
        ["reconstructed", "original"]
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    self.work.join(format!("{name}_{step:06}.png")),
                )
            })
            .filter(|(_, path)| path.is_file())
            .collect()
    }
}

pub struct StepLosses {
    /// `[total, rec, kl]`, still on the device: reading it waits for the step to finish.
    pub values: Tensor,
    pub reconstructed: Option<Tensor>,
}

impl StepLosses {
    /// The total loss (a host–device synchronisation on a GPU).
    pub fn total(&self) -> f64 {
        self.values.double_value(&[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lowers_its_loss(loss: LossType) {
        let p = TrainVaeParams {
            reconstruction_loss_type: loss,
            loss_features: vec!["Conv2d_1a_3x3".into()],
            batch_size: 4,
            latent_size: 8,
            ..Default::default()
        };
        let mut runner = StepRunner::new(&p, Device::Cpu, 3, None).unwrap();
        tch::manual_seed(11);
        // A fixed batch of smooth "images" in normalised units.
        let x = Tensor::randn([4, 3, 8, 8], (tch::Kind::Float, Device::Cpu)).upsample_bilinear2d(
            [160, 160],
            false,
            None,
            None,
        );
        let first = runner.step(&x, 1e-3, false).unwrap().total();
        let mut last = first;
        for _ in 0..25 {
            last = runner.step(&x, 1e-3, false).unwrap().total();
        }
        assert!(
            last.is_finite() && last < 0.8 * first,
            "{loss:?}: loss went {first} → {last}"
        );
    }

    #[test]
    fn a_tiny_plain_run_lowers_its_loss() {
        lowers_its_loss(LossType::Plain);
    }

    #[test]
    fn a_tiny_perceptual_run_lowers_its_loss() {
        lowers_its_loss(LossType::Perceptual);
    }

    #[test]
    fn learning_rate_decays_in_stairs_from_the_pre_increment_step() {
        let p = TrainVaeParams {
            initial_learning_rate: 0.1,
            learning_rate_decay_steps: 10,
            learning_rate_decay_factor: 0.5,
            ..Default::default()
        };
        assert_eq!(p.learning_rate(1), 0.1);
        assert_eq!(p.learning_rate(10), 0.1);
        assert_eq!(p.learning_rate(11), 0.05);
        assert_eq!(p.learning_rate(21), 0.025);
    }

    #[test]
    fn precision_stays_out_of_the_key_unless_it_is_not_fp32() {
        let key_params = |precision| {
            serde_json::to_value(TrainVaeParams {
                precision,
                ..Default::default()
            })
            .unwrap()
        };
        assert!(key_params(Precision::Fp32).get("precision").is_none());
        assert_eq!(key_params(Precision::Bf16)["precision"], "bf16");
        assert_eq!(key_params(Precision::Tf32)["precision"], "tf32");
        // And an omitted param reads back as fp32.
        let back: TrainVaeParams = serde_json::from_value(key_params(Precision::Fp32)).unwrap();
        assert_eq!(back.precision, Precision::Fp32);
    }

    #[test]
    fn a_bf16_step_trains_float32_weights_and_differs_from_fp32() {
        let run = |precision| {
            let p = TrainVaeParams {
                reconstruction_loss_type: LossType::Plain,
                batch_size: 2,
                latent_size: 4,
                precision,
                ..Default::default()
            };
            let mut runner = StepRunner::new(&p, Device::Cpu, 5, None).unwrap();
            tch::manual_seed(1);
            let x = Tensor::randn([2, 3, 160, 160], (Kind::Float, Device::Cpu));
            let losses = runner.step(&x, 1e-3, false).unwrap();
            let kinds: Vec<Kind> = runner
                .vs
                .trainable_variables()
                .iter()
                .map(Tensor::kind)
                .collect();
            (losses.total(), kinds)
        };
        let (fp32, _) = run(Precision::Fp32);
        let (bf16, kinds) = run(Precision::Bf16);
        assert!(
            kinds.iter().all(|&k| k == Kind::Float),
            "master weights stay float32: {kinds:?}"
        );
        assert!(
            bf16.is_finite() && bf16 != fp32,
            "fp32 {fp32} vs bf16 {bf16}"
        );
        // Close, though: bf16 keeps 8 mantissa bits.
        assert!(
            (bf16 - fp32).abs() < 0.05 * fp32.abs(),
            "fp32 {fp32} vs bf16 {bf16}"
        );
    }

    #[test]
    fn validate_names_the_bad_param() {
        let p = TrainVaeParams {
            loss_features: vec!["Conv2d_9z".into()],
            batch_size: 0,
            ..Default::default()
        };
        let issues = TrainVae::validate(&p);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(
            paths.contains(&"loss_features") && paths.contains(&"batch_size"),
            "{paths:?}"
        );
        // PLAIN ignores loss_features, as the original does.
        let plain = TrainVaeParams {
            reconstruction_loss_type: LossType::Plain,
            loss_features: vec!["nope".into()],
            ..Default::default()
        };
        assert!(TrainVae::validate(&plain).is_empty());
    }
}
