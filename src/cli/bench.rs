//! `vaepipe bench train`: training throughput on this machine, as a table of steps/s with
//! ratios against the first row (dfc_vae PERCEPTUAL at batch 128), plus the share of step time
//! a real training loop spends waiting for the batch pipeline. Numbers, never a pass/fail.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use crate::data::{batch_tensor, ImageList, LoaderConfig};
use crate::models::VaeArch;
use crate::stages::train_vae::{LossType, StepRunner, TrainVaeParams};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to measure
    #[arg(value_enum, default_value = "train")]
    what: BenchTarget,
    /// Timed steps per configuration (after one warm-up step)
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// `auto`, `cpu`, `cuda`, `cuda:N`
    #[arg(long, default_value = "auto")]
    device: String,
    /// Intra-op threads for libtorch (default: libtorch's choice)
    #[arg(long)]
    threads: Option<usize>,
    /// Only the small configurations (batch 32): a quick look on a slow machine
    #[arg(long)]
    quick: bool,
    /// `align` only: a folder of photos to time (default: 24 synthetic in-the-wild photos)
    #[arg(long)]
    images: Option<std::path::PathBuf>,
    /// `align` only: MTCNN weights (default: where scripts/fetch-mtcnn.sh puts them)
    #[arg(long)]
    weights: Option<std::path::PathBuf>,
    /// `align` only: the python with facenet-pytorch for the baseline (default: set one up)
    #[arg(long)]
    baseline_python: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchTarget {
    Train,
    /// MTCNN alignment vs facenet-pytorch's MTCNN
    Align,
}

struct Row {
    name: String,
    batch: usize,
    steps_per_s: f64,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let BenchTarget::Align = args.what {
        return super::bench_align::run(super::bench_align::AlignBench {
            threads: args.threads.unwrap_or(2),
            repeat: args.steps,
            images: args.images,
            weights: args
                .weights
                .unwrap_or_else(crate::models::mtcnn::default_weights_dir),
            baseline_python: args.baseline_python,
        });
    }
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    if args.steps == 0 {
        return Err(super::usage("--steps must be at least 1"));
    }
    let device = super::select_device(&args.device)?;
    let full: [(&str, VaeArch, LossType, usize); 4] = [
        (
            "dfc_vae PERCEPTUAL",
            VaeArch::DfcVae,
            LossType::Perceptual,
            128,
        ),
        (
            "dfc_vae PERCEPTUAL",
            VaeArch::DfcVae,
            LossType::Perceptual,
            32,
        ),
        ("dfc_vae PLAIN", VaeArch::DfcVae, LossType::Plain, 128),
        (
            "dfc_vae_large PERCEPTUAL",
            VaeArch::DfcVaeLarge,
            LossType::Perceptual,
            32,
        ),
    ];
    let configs: Vec<_> = full.iter().filter(|c| !args.quick || c.3 <= 32).collect();
    println!(
        "device {}  threads {}  steps {} (+1 warm-up)  loss_features Conv2d_1a_3x3,Conv2d_2a_3x3,Conv2d_2b_3x3  random face-net weights",
        crate::device::name(device),
        tch::get_num_threads(),
        args.steps
    );
    let mut rows = Vec::new();
    for &&(name, model, loss, batch) in &configs {
        let params = TrainVaeParams {
            model,
            reconstruction_loss_type: loss,
            batch_size: batch,
            ..Default::default()
        };
        let mut runner = StepRunner::new(&params, device, 666, None)?;
        let x = Tensor::randn([batch as i64, 3, 160, 160], (Kind::Float, device));
        runner.step(&x, 1e-4, false)?;
        let start = Instant::now();
        for _ in 0..args.steps {
            runner.step(&x, 1e-4, false)?;
        }
        if let Device::Cuda(_) = device {
            tch::Cuda::synchronize(0);
        }
        let steps_per_s = args.steps as f64 / start.elapsed().as_secs_f64();
        rows.push(Row {
            name: name.to_owned(),
            batch,
            steps_per_s,
        });
    }
    let base = rows.first().map(|r| r.steps_per_s).unwrap_or(1.0);
    println!("\n| configuration | batch | steps/s | images/s | vs first row |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.3} | {:.1} | {:.2}× |",
            r.name,
            r.batch,
            r.steps_per_s,
            r.steps_per_s * r.batch as f64,
            r.steps_per_s / base
        );
    }
    data_wait(device, args.steps)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs dfc_vae PERCEPTUAL at batch 32 fed by the real batch pipeline over a generated
/// synthetic set, and reports how much of each step was spent waiting for data.
fn data_wait(device: Device, steps: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let synth = vaepipe_facedata::synth::SynthParams {
        celeba_images: 0,
        celeba_identities: 0,
        identities: 8,
        images_per_identity: 16,
        ..Default::default()
    };
    vaepipe_facedata::synth::generate(dir.path(), &synth, 1)?;
    let images = ImageList::open(&dir.path().join("casia"), None)?;
    let params = TrainVaeParams {
        batch_size: 32,
        ..Default::default()
    };
    let mut runner = StepRunner::new(&params, device, 666, None)?;
    let config = LoaderConfig {
        crop: 160,
        normalization: params.normalization,
        batch_size: 32,
        seed: 1,
    };
    let mut batches = images.training_batches(&config, 0)?;
    let (mut waited, mut busy) = (Duration::ZERO, Duration::ZERO);
    for step in 0..=steps {
        let t = Instant::now();
        let batch = batches.next_batch()?;
        let w = t.elapsed();
        let t = Instant::now();
        // Reading the loss back makes the step's time its real device time on a GPU.
        runner
            .step(&crate::device::upload_batch(&batch, device), 1e-4, false)?
            .total();
        if step > 0 {
            waited += w;
            busy += t.elapsed();
        }
    }
    println!(
        "\ndata pipeline: {:.1}% of step time spent waiting for a batch (dfc_vae PERCEPTUAL, batch 32, target < 5%)",
        100.0 * waited.as_secs_f64() / (waited + busy).as_secs_f64().max(1e-9)
    );
    Ok(())
}
