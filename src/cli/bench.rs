//! `vaepipe bench train`: training throughput on this machine, as a table of steps/s with
//! ratios against the first row (dfc_vae PERCEPTUAL at batch 128), plus the share of step time
//! a real training loop spends waiting for the batch pipeline. Numbers, never a pass/fail.
//!
//! Also, each against a baseline measured in the same invocation: the malloc policy's effect
//! (child processes with `VAEPIPE_MALLOC=default` and the default `retain`, interleaved, with
//! their peak RSS), the share of the machine's fp32 matmul rate a batch-128 step reaches, and
//! with `--baseline pytorch` a PyTorch port of the same step on the same thread count
//! (`bench/train_step.py`; `--compile` adds its `torch.compile` version).

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use super::bench_baseline::{self, TorchMode, TorchRun};
use crate::data::{ImageList, LoaderConfig};
use crate::malloc_policy::{self, MallocPolicy};
use crate::models::VaeArch;
use crate::omp_wait;
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
    /// Also time a PyTorch port of the same step (bench/train_step.py) and print the ratios
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
    /// With `--baseline pytorch`: also its `torch.compile` version (compiling takes minutes)
    #[arg(long)]
    compile: bool,
    /// Skip the malloc- and OpenMP-wait-policy comparisons (two child processes per policy)
    #[arg(long)]
    no_malloc_ab: bool,
    /// `startup` only: files in the generated dataset
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    /// `startup` only: where the dataset, cache and runs go (kept for the next time)
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Internal: time only dfc_vae PERCEPTUAL at this batch and print one JSON line (the
    /// malloc comparison's child processes)
    #[arg(long, hide = true)]
    probe_batch: Option<usize>,
    /// Internal: with `--probe-batch`, read only the first N perceptual layers (the demo: 1)
    #[arg(long, hide = true, default_value_t = 3)]
    probe_layers: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Baseline {
    Pytorch,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchTarget {
    Train,
    /// MTCNN alignment vs facenet-pytorch's MTCNN
    Align,
    /// The data pipeline's decode + crop + resize, images/s per core
    Decode,
    /// An engine-only invocation (no-op run, plan, dag, gc) against the stat walk of its files
    Startup,
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
    if let BenchTarget::Decode = args.what {
        return super::bench_decode::run(super::bench_decode::DecodeBench {
            repeat: args.steps.max(1),
            threads: args.threads.unwrap_or(2),
        });
    }
    if let BenchTarget::Startup = args.what {
        return super::bench_startup::run(args.dir, args.files, args.steps);
    }
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    if args.steps == 0 {
        return Err(super::usage("--steps must be at least 1"));
    }
    let device = super::select_device(&args.device)?;
    if let Some(batch) = args.probe_batch {
        return probe(device, batch, args.probe_layers, args.steps);
    }
    let mut full: Vec<(&str, VaeArch, LossType, usize)> = vec![
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
    // experiments/demo.toml's step: one perceptual layer .
    full.push((
        "dfc_vae PERCEPTUAL, Conv2d_1a only (the demo)",
        VaeArch::DfcVae,
        LossType::Perceptual,
        32,
    ));
    let configs: Vec<_> = full.iter().filter(|c| !args.quick || c.3 <= 32).collect();
    println!(
        "device {}  threads {}  steps {} (+1 warm-up)  loss_features Conv2d_1a_3x3,Conv2d_2a_3x3,Conv2d_2b_3x3  random face-net weights",
        crate::device::name(device),
        tch::get_num_threads(),
        args.steps
    );
    println!(
        "malloc policy: {} (set {}=default for glibc's)",
        MallocPolicy::from_env(),
        malloc_policy::ENV
    );
    println!(
        "OpenMP wait policy: {} (set {}=default for libgomp's)",
        omp_wait::in_effect(),
        omp_wait::ENV
    );
    let mut rows = Vec::new();
    for &&(name, model, loss, batch) in &configs {
        let mut params = TrainVaeParams {
            model,
            reconstruction_loss_type: loss,
            batch_size: batch,
            ..Default::default()
        };
        if name.ends_with("(the demo)") {
            params.loss_features = vec!["Conv2d_1a_3x3".into()];
        }
        rows.push(Row {
            name: name.to_owned(),
            batch,
            steps_per_s: time_steps(&params, device, args.steps)?,
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
    if let Some(first) = rows.first().filter(|r| r.batch == 128) {
        let flops = bench_baseline::dfc_vae_step_flops(128, 3);
        let rate = bench_baseline::matmul_flops_per_s(device);
        println!(
            "\nmachine share: a dfc_vae PERCEPTUAL batch-128 step is {:.1} GFLOP (convolutions, FCs, resizes; forward and the gradients autograd computes); at {:.3} steps/s that is {:.1} GFLOP/s = {:.1}% of this machine's fp32 matmul rate ({:.1} GFLOP/s, 1024² matmul, same threads)",
            flops / 1e9,
            first.steps_per_s,
            flops * first.steps_per_s / 1e9,
            100.0 * flops * first.steps_per_s / rate,
            rate / 1e9
        );
    }
    if !args.no_malloc_ab {
        malloc_ab(&args, if args.quick { 32 } else { 128 })?;
        omp_wait_ab(&args, 32)?;
    }
    if let Some(Baseline::Pytorch) = args.baseline {
        pytorch_baseline(&args, device)?;
    }
    data_wait(device, args.steps)?;
    Ok(ExitCode::SUCCESS)
}

/// Steps/s of `steps` timed training steps (after one warm-up) on a random batch.
fn time_steps(params: &TrainVaeParams, device: Device, steps: usize) -> Result<f64> {
    let mut runner = StepRunner::new(params, device, 666, None)?;
    let batch = params.batch_size as i64;
    let x = Tensor::randn([batch, 3, 160, 160], (Kind::Float, device));
    runner.step(&x, 1e-4, false)?;
    let start = Instant::now();
    for _ in 0..steps {
        runner.step(&x, 1e-4, false)?;
    }
    if let Device::Cuda(_) = device {
        tch::Cuda::synchronize(0);
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

fn perceptual(batch: usize) -> TrainVaeParams {
    TrainVaeParams {
        batch_size: batch,
        ..Default::default()
    }
}

/// The malloc comparison's child: one configuration, one JSON line.
fn probe(device: Device, batch: usize, layers: usize, steps: usize) -> Result<ExitCode> {
    let mut params = perceptual(batch);
    params.loss_features.truncate(layers.max(1));
    let cpu = cpu_seconds();
    let steps_per_s = time_steps(&params, device, steps)?;
    let line = serde_json::json!({
        "steps_per_s": steps_per_s,
        "peak_rss_bytes": malloc_policy::peak_rss_bytes(),
        "cpu_s": cpu_seconds() - cpu,
    });
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// This process's user + system CPU time so far, in seconds.
fn cpu_seconds() -> f64 {
    super::bench_startup::proc_cpu_seconds(false)
}

/// A process-wide policy compared in child processes: its environment variable, and the
/// table's words for the opt-out (`default`) and for vaepipe's default.
struct PolicyAb {
    title: &'static str,
    env: &'static str,
    default_label: String,
    ours: &'static str,
    ours_label: String,
}

/// Runs the probe in child processes under each policy, interleaved (default, vaepipe's,
/// default, vaepipe's), and prints steps/s and peak RSS with vaepipe's ratios against default.
fn policy_ab(args: &BenchArgs, batch: usize, ab: &PolicyAb) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut results: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for _round in 0..2 {
        for (i, policy) in ["default", ab.ours].into_iter().enumerate() {
            let mut cmd = Command::new(&exe);
            cmd.args(["bench", "train", "--probe-batch", &batch.to_string()])
                .args(["--steps", &args.steps.to_string(), "--device", &args.device])
                .env(ab.env, policy);
            if let Some(t) = args.threads {
                cmd.args(["--threads", &t.to_string()]);
            }
            let out = cmd.output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line: serde_json::Value = stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str(l).ok())
                .with_context(|| {
                    format!(
                        "the {} probe ({policy}) printed no result: {stdout}{}",
                        ab.title,
                        String::from_utf8_lossy(&out.stderr)
                    )
                })?;
            let sps = line["steps_per_s"].as_f64().unwrap_or(f64::NAN);
            let rss = line["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN);
            results[i].push((sps, rss));
        }
    }
    let mean =
        |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (d_sps, d_rss) = (mean(&results[0], |r| r.0), mean(&results[0], |r| r.1));
    let (r_sps, r_rss) = (mean(&results[1], |r| r.0), mean(&results[1], |r| r.1));
    println!(
        "\n{} (dfc_vae PERCEPTUAL, batch {batch}, child processes interleaved default/{}×2, load {}):",
        ab.title,
        ab.ours,
        super::bench_startup::load_average()
    );
    println!("| policy | steps/s | peak RSS | vs default |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {} | {d_sps:.3} | {:.0} MiB | 1.00× |",
        ab.default_label,
        d_rss / 1048576.0
    );
    println!(
        "| {} | {r_sps:.3} | {:.0} MiB | {:.2}× speed, {:.2}× peak RSS |",
        ab.ours_label,
        r_rss / 1048576.0,
        r_sps / d_sps,
        r_rss / d_rss
    );
    Ok(())
}

/// The malloc policy's comparison: glibc's defaults against `retain`.
fn malloc_ab(args: &BenchArgs, batch: usize) -> Result<()> {
    policy_ab(
        args,
        batch,
        &PolicyAb {
            title: "malloc policy",
            env: malloc_policy::ENV,
            default_label: format!("default ({}=default)", malloc_policy::ENV),
            ours: "retain",
            ours_label: "retain (vaepipe's default)".into(),
        },
    )
}

/// The OpenMP wait policy's comparison: libgomp's spinning against `passive`.
fn omp_wait_ab(args: &BenchArgs, batch: usize) -> Result<()> {
    policy_ab(
        args,
        batch,
        &PolicyAb {
            title: "OpenMP wait policy",
            env: omp_wait::ENV,
            default_label: format!(
                "libgomp's default, spin then sleep ({}=default)",
                omp_wait::ENV
            ),
            ours: "passive",
            ours_label: "passive (vaepipe's default)".into(),
        },
    )
}

/// vaepipe and the PyTorch port of the same step, at batch 128 and 32 (only 32 with `--quick`),
/// each batch measured vaepipe → PyTorch → vaepipe so the ratio compares the same window.
fn pytorch_baseline(args: &BenchArgs, device: Device) -> Result<()> {
    if device != Device::Cpu {
        println!(
            "\n(PyTorch baseline: CPU only for now; skipped on {})",
            crate::device::name(device)
        );
        return Ok(());
    }
    let python = bench_baseline::find_python()?;
    let dir = tempfile::tempdir()?;
    let script = bench_baseline::write_script(dir.path())?;
    let mut modes = vec![TorchMode::Eager];
    if args.compile {
        modes.push(TorchMode::Compile);
    }
    let batches: &[usize] = if args.quick { &[32] } else { &[128, 32] };
    println!(
        "\nvs PyTorch ({}, same thread count {}, default allocators; dfc_vae PERCEPTUAL, three layers; vaepipe's OpenMP wait: {}; load {}):",
        python.display(),
        tch::get_num_threads(),
        omp_wait::in_effect(),
        super::bench_startup::load_average()
    );
    println!("| batch | vaepipe steps/s | baseline | baseline steps/s | vaepipe vs baseline |");
    println!("|---:|---:|---|---:|---:|");
    for &batch in batches {
        let before = time_steps(&perceptual(batch), device, args.steps)?;
        let mut theirs = Vec::new();
        for &mode in &modes {
            // As users run it (libgomp's spinning), and with the wait policy vaepipe sets.
            for omp_passive in [false, true] {
                let run = TorchRun {
                    python: &python,
                    script: &script,
                    batch,
                    depth: 3,
                    steps: args.steps,
                    threads: tch::get_num_threads() as usize,
                    omp_passive,
                };
                theirs.push((mode, omp_passive, run.steps_per_s(mode)?));
            }
        }
        let after = time_steps(&perceptual(batch), device, args.steps)?;
        let ours = (before + after) / 2.0;
        for (mode, omp_passive, sps) in theirs {
            println!(
                "| {batch} | {ours:.3} | {}{} | {sps:.3} | {:.2}× |",
                mode.name(),
                if omp_passive {
                    " + OMP_WAIT_POLICY=PASSIVE"
                } else {
                    ""
                },
                ours / sps
            );
        }
    }
    Ok(())
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
            .step(&crate::data::upload_batch(&batch, device), 1e-4, false)?
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
