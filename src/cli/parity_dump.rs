//! `vaepipe parity-dump` (hidden): runs one of vaepipe's model pieces on `.npy` inputs and
//! writes what it computed as `.npy`/`.npz`, so the parity harness (`tests/parity/`, `make
//! parity`) can compare it with facenet's original TensorFlow graph on the same inputs.
//!
//! It is a development hook, not a user verb: arrays are NHWC float32 as TF uses them (images)
//! or `[B, L]` (latents); weights are the files `vaepipe import-weights` writes. `--mutate NAME`
//! switches on one deliberate fault (`models::mutation`) so the harness can show that each
//! named comparison fails when vaepipe gets that detail wrong.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::formats::vae_spec::VaeSpec;
use crate::models::inception_resnet_v1::{InceptionConfig, InceptionResnetV1};
use crate::models::mutation::{self, Mutation};
use crate::models::{self, resize};
use crate::stages::train_vae::{StepRunner, TrainVaeParams};

#[derive(clap::Args)]
pub struct ParityDumpArgs {
    /// Apply one deliberate fault to vaepipe's side (the harness's mutation check)
    #[arg(long, value_enum, global = true)]
    mutate: Option<Mutation>,
    #[command(subcommand)]
    what: Dump,
}

#[derive(clap::Subcommand)]
enum Dump {
    /// A VAE's encoder and decoder in inference and then training mode
    Vae {
        /// A VAE directory (`vaepipe import-weights --what vae` output)
        #[arg(long)]
        model: PathBuf,
        /// `[B, s, s, 3]` normalised images at the VAE's size
        #[arg(long)]
        images: PathBuf,
        /// `[B, L]` latents for the decoder
        #[arg(long)]
        latents: PathBuf,
        /// Output `.npz`
        #[arg(long)]
        out: PathBuf,
    },
    /// Inception-ResNet-v1 end points (inference mode)
    FaceNet {
        /// Face-net `.safetensors` (`vaepipe import-weights` output)
        #[arg(long)]
        weights: PathBuf,
        /// `[B, H, W, 3]` input
        #[arg(long)]
        images: PathBuf,
        /// End point names, comma-separated
        #[arg(long, value_delimiter = ',')]
        end_points: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// TF1-legacy bilinear resize of `[B, H, W, C]` to `size × size`
    Resize {
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        size: i64,
        #[arg(long)]
        out: PathBuf,
    },
    /// train-vae's training step, `S` times on fed batches and fed sampling noise
    Train {
        /// train-vae params as JSON (the stage's TOML params, same names)
        #[arg(long)]
        params: PathBuf,
        /// Initial VAE weights (a `vaepipe import-weights --what vae` directory)
        #[arg(long)]
        model: PathBuf,
        /// Face-net `.safetensors` (PERCEPTUAL)
        #[arg(long)]
        face_net: Option<PathBuf>,
        /// `[S, B, crop, crop, 3]` batches in pixel units (0..255)
        #[arg(long)]
        batches: PathBuf,
        /// `[S, B, L]` reparameterisation noise
        #[arg(long)]
        noise: PathBuf,
        /// Output directory: `losses.npy` `[S, 3]` (total, rec, KL), `state.npz`
        #[arg(long)]
        out: PathBuf,
    },
    /// The encode stage's sampling noise for batch `batch` (`[rows, latent]`)
    Noise {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        batch: u64,
        #[arg(long)]
        rows: i64,
        #[arg(long)]
        latent: i64,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: ParityDumpArgs) -> Result<ExitCode> {
    if let Some(m) = args.mutate {
        mutation::activate(m);
        eprintln!("parity-dump: mutation {m:?} is active");
    }
    match args.what {
        Dump::Vae {
            model,
            images,
            latents,
            out,
        } => dump_vae(&model, &images, &latents, &out)?,
        Dump::FaceNet {
            weights,
            images,
            end_points,
            out,
        } => {
            let mut vs = VarStore::new(Device::Cpu);
            let net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::facenet(), &end_points)?;
            let report = models::weights::load_face_net(&mut vs, &weights)?;
            if !report.is_empty() {
                eprintln!("{report}");
            }
            let x = nchw(&read(&images)?);
            let maps = tch::no_grad(|| net.forward_features(&x, &end_points))?;
            let named: Vec<(String, Tensor)> = end_points
                .iter()
                .zip(maps)
                .map(|(n, t)| (n.clone(), if t.dim() == 4 { nhwc(&t) } else { t }))
                .collect();
            Tensor::write_npz(&named, out)?;
        }
        Dump::Resize { images, size, out } => {
            let x = nchw(&read(&images)?);
            nhwc(&resize::resize(&x, size, size, resize::Sampling::TfLegacy)).write_npy(out)?;
        }
        Dump::Train {
            params,
            model,
            face_net,
            batches,
            noise,
            out,
        } => dump_training(&params, &model, face_net.as_deref(), &batches, &noise, &out)?,
        Dump::Noise {
            seed,
            batch,
            rows,
            latent,
            out,
        } => {
            // Exactly what the encode stage draws for its batch `batch`.
            tch::manual_seed(crate::train::seed::step_seed(seed, batch));
            Tensor::randn([rows, latent], (Kind::Float, Device::Cpu)).write_npy(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> Result<Tensor> {
    Tensor::read_npy(path)
        .with_context(|| format!("failed to read {}", path.display()))
        .map(|t| t.to_kind(Kind::Float))
}

fn nchw(x: &Tensor) -> Tensor {
    x.permute([0, 3, 1, 2]).contiguous()
}

fn nhwc(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous()
}

/// The same sequence the harness runs in TF: inference-mode encoder and decoder (moving
/// statistics from the checkpoint), then training mode (batch statistics, averages moved),
/// then the moved averages.
fn dump_vae(model: &Path, images: &Path, latents: &Path, out: &Path) -> Result<()> {
    let (_, vs, vae) = VaeSpec::load(model, Device::Cpu)?;
    let x = nchw(&read(images)?);
    let z = read(latents)?;
    let mut named: Vec<(String, Tensor)> = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for (mode, train) in [("eval", false), ("train", true)] {
            let (mean, log_var) = vae.f_encode(&x, train)?;
            let decoded = vae.f_decode(&z, train)?;
            named.push((format!("{mode}_mean"), mean));
            named.push((format!("{mode}_log_variance"), log_var));
            named.push((format!("{mode}_decoded"), nhwc(&decoded)));
        }
        Ok(())
    })?;
    for (name, t) in vs.variables() {
        if name.contains("moving_") {
            named.push((name, t));
        }
    }
    Tensor::write_npz(&named, out)?;
    Ok(())
}

fn dump_training(
    params: &Path,
    model: &Path,
    face_net: Option<&Path>,
    batches: &Path,
    noise: &Path,
    out: &Path,
) -> Result<()> {
    let text =
        std::fs::read(params).with_context(|| format!("failed to read {}", params.display()))?;
    let p: TrainVaeParams = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not train-vae params", params.display()))?;
    let spec = VaeSpec::read(model)?;
    if spec.model != p.model || spec.latent_size != p.latent_size {
        bail!(
            "{} holds a {} with L={}, the params ask for {} with L={}",
            model.display(),
            spec.model,
            spec.latent_size,
            p.model,
            p.latent_size
        );
    }
    let mut runner = StepRunner::new(&p, Device::Cpu, 0, face_net)?;
    models::weights::load_safetensors(runner.variables_mut(), &model.join(VaeSpec::WEIGHTS))?;
    let batches = read(batches)?; // [S, B, crop, crop, 3]
    let noise = read(noise)?; // [S, B, L]
    let steps = batches.size()[0];
    let mut losses = Vec::with_capacity(steps as usize * 3);
    for s in 0..steps {
        let originals = p.normalization.from_pixels(&nchw(&batches.get(s)));
        let step = s as u64 + 1;
        let l = runner.step_with_noise(
            &originals,
            p.learning_rate(step),
            false,
            Some(&noise.get(s)),
        )?;
        let v: Vec<f64> = Vec::try_from(&l.values.to_device(Device::Cpu).to_kind(Kind::Double))?;
        losses.extend(v);
    }
    std::fs::create_dir_all(out)?;
    Tensor::from_slice(&losses)
        .view([steps, 3])
        .write_npy(out.join("losses.npy"))?;
    let mut named = runner
        .variables_mut()
        .variables()
        .into_iter()
        .collect::<Vec<_>>();
    named.extend(runner.optimizer().state().1);
    Tensor::write_npz(&named, out.join("state.npz"))?;
    Ok(())
}
