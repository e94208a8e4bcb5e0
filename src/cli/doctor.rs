//! `vaepipe doctor`: what this machine gives vaepipe, and whether it computes right.
//!
//! First the facts (vaepipe and libtorch versions and the libtorch file the loader picked,
//! CUDA devices, cuDNN, TF32 state, HDF5, threads), then checks: a float32 convolution on the
//! CPU against a float64 reference, the same weights on each GPU against it (≤ 1e-5 relative,
//! with TF32 off as `precision = "fp32"` sets it), a 20-step tiny train-vae on each device
//! (the loss falls, nothing is NaN), and on each GPU a throughput probe (dfc_vae PERCEPTUAL at
//! batch 128 in steps/s per precision, encode in images/s).
//!
//! Exit status: 0 when every check passed — a machine without CUDA passes after its CPU
//! checks and says "no CUDA device" (`--require-cuda` makes that a failure); 1 when a check
//! failed, each failure followed by what to do.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::models::{self, VaeArch};
use crate::precision::{self, Precision};
use crate::stages::train_vae::{LossType, StepRunner, TrainVaeParams};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Fail (exit 1) when libtorch sees no CUDA device
    #[arg(long)]
    require_cuda: bool,
    /// Skip the GPU throughput probe (the slowest part)
    #[arg(long)]
    no_probe: bool,
}

/// The fp32 agreement a GPU convolution must reach against the float64 reference.
const MAX_RELATIVE_DIFFERENCE: f64 = 1e-5;
const TINY_TRAIN_STEPS: usize = 20;

/// One check's outcome: a line, and for a failure what to do.
struct Outcome {
    name: String,
    passed: bool,
    detail: String,
    fix: &'static str,
}

pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    let cuda = crate::device::Available::probe().cuda_devices;
    print_facts(cuda);
    println!("\nchecks");
    let mut outcomes = Vec::new();
    let mut devices = vec![Device::Cpu];
    devices.extend((0..cuda).map(Device::Cuda));
    let reference = conv_reference();
    for &device in &devices {
        outcomes.push(report(conv_check(device, &reference)));
        outcomes.push(report(tiny_train_check(device)));
    }
    if cuda == 0 {
        println!("  --   no CUDA device: GPU checks and the throughput probe skipped");
        if args.require_cuda {
            outcomes.push(report(Outcome {
                name: "CUDA device".into(),
                passed: false,
                detail: "libtorch sees no CUDA device (--require-cuda)".into(),
                fix: "check `nvidia-smi`, that the libtorch loaded (above) is a CUDA build, and that LD_LIBRARY_PATH reaches its CUDA libraries",
            }));
        }
    } else if !args.no_probe {
        for &device in &devices[1..] {
            throughput_probe(device)?;
        }
    }
    Precision::Fp32.apply()?;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    if failed.is_empty() {
        println!("\nall checks passed");
        return Ok(ExitCode::SUCCESS);
    }
    println!("\n{} check(s) failed:", failed.len());
    for o in failed {
        println!("  {}: {}\n    what to do: {}", o.name, o.detail, o.fix);
    }
    Ok(ExitCode::from(1))
}

fn report(outcome: Outcome) -> Outcome {
    let mark = if outcome.passed { "ok  " } else { "FAIL" };
    println!("  {mark} {}: {}", outcome.name, outcome.detail);
    outcome
}

fn print_facts(cuda: usize) {
    println!("vaepipe {}", env!("CARGO_PKG_VERSION"));
    println!(
        "libtorch {} (built against)",
        crate::device::LIBTORCH_VERSION
    );
    match crate::device::loaded_libtorch() {
        Some(path) => println!(
            "libtorch loaded {} (version {})",
            path.display(),
            crate::device::libtorch_version_beside(&path).unwrap_or_else(|| "unknown".into())
        ),
        None => println!("libtorch loaded: not found in /proc/self/maps"),
    }
    if cuda == 0 {
        println!("CUDA: no CUDA device (libtorch sees none)");
    } else {
        println!(
            "CUDA: {cuda} device(s), runtime {}",
            cuda_version(tch::utils::version_cudart())
        );
        for (i, line) in nvidia_smi_lines().iter().enumerate().take(cuda) {
            println!("  cuda:{i} {line}");
        }
        let cudnn = if tch::Cuda::cudnn_is_available() {
            cudnn_version(tch::utils::version_cudnn())
        } else {
            "not available".into()
        };
        println!("cuDNN: {cudnn}");
    }
    match precision::tf32_state() {
        Some(s) => println!(
            "TF32 now: cuBLAS {}, cuDNN {} (each stage sets it from its `precision`; fp32 turns both off)",
            on_off(s.cublas),
            on_off(s.cudnn)
        ),
        None => println!("TF32: unknown (libtorch refused the query)"),
    }
    let (major, minor, release) = hdf5::library_version();
    let linkage = if cfg!(feature = "static-hdf5") {
        "static, bundled"
    } else {
        "shared, system"
    };
    println!("HDF5: {major}.{minor}.{release} ({linkage})");
    println!(
        "threads: libtorch intra-op {}, inter-op {}; {} CPU cores available",
        tch::get_num_threads(),
        tch::get_num_interop_threads(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The CUDA runtime encodes its version as major·1000 + minor·10.
fn cuda_version(v: i64) -> String {
    if v > 0 {
        format!("{}.{}", v / 1000, v / 10 % 100)
    } else {
        "unknown".into()
    }
}

/// cuDNN 9 encodes major·10000 + minor·100 + patch; cuDNN 8 major·1000 + minor·100 + patch.
fn cudnn_version(v: i64) -> String {
    if v >= 90_000 {
        format!("{}.{}.{}", v / 10_000, v / 100 % 100, v % 100)
    } else if v > 0 {
        format!("{}.{}.{}", v / 1000, v / 100 % 10, v % 100)
    } else {
        "unknown".into()
    }
}

/// Name, memory and compute capability per GPU; libtorch's C API does not expose them.
fn nvidia_smi_lines() -> Vec<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,compute_cap",
            "--format=csv,noheader",
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').map(str::trim).collect();
                match f.as_slice() {
                    [name, memory, cc] => format!("{name}, {memory}, compute capability {cc}"),
                    _ => l.to_owned(),
                }
            })
            .collect(),
        _ => vec!["(name, memory, compute capability: nvidia-smi not found)".into()],
    }
}

/// A DFC-VAE-like convolution (4×4, stride 2) with fixed random weights, and its output in
/// float64 on the CPU: the reference every device is held to.
struct ConvReference {
    input: Tensor,
    weight: Tensor,
    bias: Tensor,
    expected: Tensor,
}

fn conv_reference() -> ConvReference {
    tch::manual_seed(20_161_101);
    let cpu = (Kind::Float, Device::Cpu);
    let input = Tensor::randn([8, 32, 32, 32], cpu);
    let weight = Tensor::randn([64, 32, 4, 4], cpu) * 0.1;
    let bias = Tensor::randn([64], cpu);
    let expected = conv(
        &input.to_kind(Kind::Double),
        &weight.to_kind(Kind::Double),
        &bias.to_kind(Kind::Double),
    );
    ConvReference {
        input,
        weight,
        bias,
        expected,
    }
}

fn conv(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    x.conv2d(w, Some(b), [2, 2], [1, 1], [1, 1], 1)
}

/// max |a − b| / max |b|, on the CPU in float64.
fn relative_difference(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let scale = b.abs().max().double_value(&[]).max(f64::MIN_POSITIVE);
    (a - b).abs().max().double_value(&[]) / scale
}

fn conv_check(device: Device, r: &ConvReference) -> Outcome {
    let name = format!("conv forward fp32 {}", crate::device::name(device));
    let run = || -> Result<f64> {
        Precision::Fp32.apply()?;
        let out = conv(
            &r.input.to_device(device),
            &r.weight.to_device(device),
            &r.bias.to_device(device),
        );
        Ok(relative_difference(&out, &r.expected))
    };
    match run() {
        Ok(diff) => {
            let mut detail = format!(
                "max relative difference {diff:.2e} vs float64 on the CPU (limit {MAX_RELATIVE_DIFFERENCE:.0e})"
            );
            if device.is_cuda() {
                // For the record: what TF32 would do to the same convolution.
                if let Ok(tf32) = tf32_difference(device, r) {
                    detail.push_str(&format!("; with TF32 it would be {tf32:.2e}"));
                }
            }
            Outcome {
                name,
                passed: diff <= MAX_RELATIVE_DIFFERENCE,
                detail,
                fix: "float32 convolutions disagree with the reference: on a GPU check that TF32 is off (the TF32 line above) and report the libtorch/cuDNN versions; on a CPU report the CPU model and the libtorch version",
            }
        }
        Err(e) => Outcome {
            name,
            passed: false,
            detail: format!("failed: {e:#}"),
            fix: "libtorch could not run a convolution on this device; check the libtorch loaded (above) matches the driver",
        },
    }
}

fn tf32_difference(device: Device, r: &ConvReference) -> Result<f64> {
    Precision::Tf32.apply()?;
    let out = conv(
        &r.input.to_device(device),
        &r.weight.to_device(device),
        &r.bias.to_device(device),
    );
    let diff = relative_difference(&out, &r.expected);
    Precision::Fp32.apply()?;
    Ok(diff)
}

fn tiny_train_check(device: Device) -> Outcome {
    let name = format!(
        "train-vae {TINY_TRAIN_STEPS} steps {}",
        crate::device::name(device)
    );
    let run = || -> Result<(f64, f64, bool)> {
        Precision::Fp32.apply()?;
        let p = TrainVaeParams {
            reconstruction_loss_type: LossType::Perceptual,
            loss_features: vec!["Conv2d_1a_3x3".into()],
            batch_size: 4,
            latent_size: 8,
            ..Default::default()
        };
        let mut runner = StepRunner::new(&p, device, 3, None)?;
        tch::manual_seed(11);
        // A fixed batch of smooth "images" in normalised units.
        let x = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu))
            .upsample_bilinear2d([160, 160], false, None, None)
            .to_device(device);
        let mut losses = Vec::with_capacity(TINY_TRAIN_STEPS);
        for _ in 0..TINY_TRAIN_STEPS {
            losses.push(runner.step(&x, 1e-3, false)?.values.select(0, 0));
        }
        let losses: Vec<f64> = Vec::try_from(&Tensor::stack(&losses, 0).to_kind(Kind::Double))?;
        let finite = losses.iter().all(|l| l.is_finite());
        Ok((losses[0], losses[losses.len() - 1], finite))
    };
    match run() {
        Ok((first, last, finite)) => Outcome {
            name,
            passed: finite && last < first,
            detail: format!("total loss {first:.4e} → {last:.4e}{}", if finite { "" } else { ", NOT FINITE" }),
            fix: "training does not learn on this device: run `vaepipe doctor` on the CPU to compare, and report the versions above",
        },
        Err(e) => Outcome {
            name,
            passed: false,
            detail: format!("failed: {e:#}"),
            fix: "a training step failed on this device (out of memory? a libtorch/driver mismatch?); the error above says which",
        },
    }
}

/// Steps/s of dfc_vae PERCEPTUAL at batch 128 per precision, and encode images/s (fp32).
fn throughput_probe(device: Device) -> Result<()> {
    let dev = crate::device::name(device);
    let index = match device {
        Device::Cuda(i) => i as i64,
        _ => 0,
    };
    for precision in [Precision::Fp32, Precision::Tf32, Precision::Bf16] {
        precision.apply()?;
        let p = TrainVaeParams {
            model: VaeArch::DfcVae,
            reconstruction_loss_type: LossType::Perceptual,
            batch_size: 128,
            precision,
            ..Default::default()
        };
        let mut runner = StepRunner::new(&p, device, 666, None)?;
        let x = Tensor::randn([128, 3, 160, 160], (Kind::Float, device));
        for _ in 0..3 {
            runner.step(&x, 1e-4, false)?;
        }
        tch::Cuda::synchronize(index);
        let steps = 30;
        let start = Instant::now();
        for _ in 0..steps {
            runner.step(&x, 1e-4, false)?;
        }
        tch::Cuda::synchronize(index);
        let rate = steps as f64 / start.elapsed().as_secs_f64();
        println!(
            "  info throughput {dev} {}: dfc_vae PERCEPTUAL batch 128: {rate:.1} steps/s ({:.1} min for 50,000 steps; goal ≥ 55 steps/s)",
            precision.name(),
            50_000.0 / rate / 60.0
        );
    }
    Precision::Fp32.apply()?;
    let vs = VarStore::new(device);
    let vae = models::Vae::new(&vs.root(), VaeArch::DfcVae, 100)?;
    let x = Tensor::randn([128, 3, 64, 64], (Kind::Float, device));
    let batches = 30;
    let encode = || tch::no_grad(|| vae.encode(&x, true));
    for _ in 0..3 {
        let _ = encode();
    }
    tch::Cuda::synchronize(index);
    let start = Instant::now();
    for _ in 0..batches {
        let _ = encode();
    }
    tch::Cuda::synchronize(index);
    let rate = (batches * 128) as f64 / start.elapsed().as_secs_f64();
    println!("  info throughput {dev} fp32: encode dfc_vae batch 128: {rate:.0} images/s");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_read_as_people_write_them() {
        assert_eq!(cuda_version(13_000), "13.0");
        assert_eq!(cuda_version(12_080), "12.8");
        assert_eq!(cuda_version(0), "unknown");
        assert_eq!(cudnn_version(91_002), "9.10.2");
        assert_eq!(cudnn_version(8_907), "8.9.7");
    }

    #[test]
    fn the_cpu_conv_check_passes_and_a_perturbed_result_fails_it() {
        let r = conv_reference();
        let ok = conv_check(Device::Cpu, &r);
        assert!(ok.passed, "{}", ok.detail);
        let off = conv(&r.input, &r.weight, &(&r.bias + 1e-3));
        assert!(relative_difference(&off, &r.expected) > MAX_RELATIVE_DIFFERENCE);
    }
}
