//! What `vaepipe bench train` compares itself with: a PyTorch port of the same training step
//! (`bench/train_step.py`, embedded in the binary and run by the bootstrap's torch venv
//! python, eager and optionally `torch.compile`d), the FLOPs of a step counted from the
//! architecture, and the machine's measured fp32 matmul rate, so a row can say what share of
//! the machine a step reaches.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// The PyTorch port, written to a temporary file for the interpreter.
const TRAIN_STEP_PY: &str = include_str!("../../bench/train_step.py");

/// The environment variable naming the python that has torch (default: the bootstrap's venv).
pub const PYTHON_ENV: &str = "VAEPIPE_BENCH_PYTHON";

/// How PyTorch runs the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchMode {
    Eager,
    Compile,
}

impl TorchMode {
    pub fn name(self) -> &'static str {
        match self {
            TorchMode::Eager => "PyTorch eager",
            TorchMode::Compile => "PyTorch torch.compile",
        }
    }
}

/// The python interpreter of the venv the bootstrap installed torch into: `$VAEPIPE_BENCH_PYTHON`,
/// else `bin/python` above the libtorch this binary was built against.
pub fn find_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        return Ok(PathBuf::from(p));
    }
    let lib = Path::new(env!("VAEPIPE_LIBTORCH_LIB"));
    lib.ancestors()
        .map(|dir| dir.join("bin").join("python"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no python with torch found above {} (scripts/bootstrap.sh's venv); set {PYTHON_ENV} to one",
                lib.display()
            )
        })
}

/// A PyTorch step's throughput, in a child python on `threads` intra-op threads.
pub struct TorchRun<'a> {
    pub python: &'a Path,
    pub script: &'a Path,
    pub batch: usize,
    /// How many of the stem's end points the perceptual loss reads (1..=3).
    pub depth: usize,
    pub steps: usize,
    pub threads: usize,
    /// Run it with `OMP_WAIT_POLICY=PASSIVE` (vaepipe's default wait policy, src/omp_wait.rs)
    /// instead of the environment's.
    pub omp_passive: bool,
}

impl TorchRun<'_> {
    pub fn steps_per_s(&self, mode: TorchMode) -> Result<f64> {
        let mut cmd = Command::new(self.python);
        cmd.arg(self.script)
            .args(["--batch", &self.batch.to_string()])
            .args(["--depth", &self.depth.to_string()])
            .args(["--steps", &self.steps.to_string()])
            .args(["--threads", &self.threads.to_string()]);
        if mode == TorchMode::Compile {
            cmd.arg("--compile");
        }
        if self.omp_passive {
            cmd.env("OMP_WAIT_POLICY", "PASSIVE");
        }
        let out = cmd
            .output()
            .with_context(|| format!("failed to start {}", self.python.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            bail!(
                "{} failed ({}): {}",
                mode.name(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        parse_steps_per_s(&stdout)
            .with_context(|| format!("{} printed no result line: {stdout}", mode.name()))
    }
}

/// Writes the embedded port into `dir` and returns its path.
pub fn write_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("train_step.py");
    std::fs::write(&path, TRAIN_STEP_PY)?;
    Ok(path)
}

/// The `steps_per_s` of the script's last JSON line.
fn parse_steps_per_s(stdout: &str) -> Option<f64> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))?;
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("steps_per_s")?.as_f64()
}

/// A convolution or matmul of the step, for counting FLOPs.
struct Layer {
    /// Multiply-adds of one forward pass for one image.
    macs: f64,
    /// Whether backward needs the input's gradient (not for the first layer on data).
    input_grad: bool,
    /// Whether backward needs the weights' gradient (not for the frozen face net).
    weight_grad: bool,
    /// Whether the layer runs forward only (the originals' pass under `no_grad`).
    forward_only: bool,
}

fn conv(c_in: f64, c_out: f64, k: f64, out_side: f64) -> f64 {
    c_in * k * k * c_out * out_side * out_side
}

/// FLOPs (2 per multiply-add) of one `dfc_vae` PERCEPTUAL training step at `batch`, reading
/// the first `depth` (1..=3) end points of the face net at 160 px: forward, plus backward's
/// input and weight gradients where autograd computes them. Elementwise work (BN, activations,
/// Adam) is not counted: it is memory-bound, a small share of the FLOPs.
pub fn dfc_vae_step_flops(batch: usize, depth: usize) -> f64 {
    let trained = |macs, input_grad| Layer {
        macs,
        input_grad,
        weight_grad: true,
        forward_only: false,
    };
    let mut layers = vec![
        // 160 → 64 resize of the originals (no gradient): rows then columns, 3 channels.
        Layer {
            macs: 3.0 * (64.0 * 160.0 * 160.0 + 64.0 * 64.0 * 160.0),
            input_grad: false,
            weight_grad: false,
            forward_only: true,
        },
        trained(conv(3.0, 32.0, 4.0, 32.0), false), // encoder Conv2d_1 on the data
        trained(conv(32.0, 64.0, 4.0, 16.0), true),
        trained(conv(64.0, 128.0, 4.0, 8.0), true),
        trained(conv(128.0, 256.0, 4.0, 4.0), true),
        trained(2.0 * 4096.0 * 100.0, true), // Fc_1 (mean) and Fc_2 (log-variance)
        trained(100.0 * 4096.0, true),       // decoder Fc_1
        trained(conv(256.0, 128.0, 3.0, 8.0), true),
        trained(conv(128.0, 64.0, 3.0, 16.0), true),
        trained(conv(64.0, 32.0, 3.0, 32.0), true),
        trained(conv(32.0, 3.0, 3.0, 64.0), true),
        // 64 → 160 resize of the reconstructions (gradient to the decoder).
        Layer {
            macs: 3.0 * (160.0 * 64.0 * 64.0 + 160.0 * 160.0 * 64.0),
            input_grad: true,
            weight_grad: false,
            forward_only: false,
        },
    ];
    // Inception-ResNet-v1's stem: Conv2d_1a 3×3/2 VALID → 79², 2a 3×3 VALID → 77², 2b SAME.
    let stem = [
        conv(3.0, 32.0, 3.0, 79.0),
        conv(32.0, 32.0, 3.0, 77.0),
        conv(32.0, 64.0, 3.0, 77.0),
    ];
    for &macs in &stem[..depth.clamp(1, 3)] {
        // The originals, under no_grad…
        layers.push(Layer {
            macs,
            input_grad: false,
            weight_grad: false,
            forward_only: true,
        });
        // …and the reconstructions, whose input gradient reaches the VAE.
        layers.push(Layer {
            macs,
            input_grad: true,
            weight_grad: false,
            forward_only: false,
        });
    }
    let per_image: f64 = layers
        .iter()
        .map(|l| {
            let passes = if l.forward_only {
                1.0
            } else {
                1.0 + f64::from(u8::from(l.input_grad)) + f64::from(u8::from(l.weight_grad))
            };
            l.macs * passes
        })
        .sum();
    2.0 * per_image * batch as f64
}

/// The machine's fp32 matmul rate in FLOP/s on the current thread count: the best of a few
/// 1024×1024 products (2.1 GFLOP each) after a warm-up.
pub fn matmul_flops_per_s(device: Device) -> f64 {
    let n = 1024i64;
    let a = Tensor::randn([n, n], (Kind::Float, device));
    let b = Tensor::randn([n, n], (Kind::Float, device));
    let _ = a.matmul(&b);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let c = a.matmul(&b);
        if let Device::Cuda(_) = device {
            tch::Cuda::synchronize(0);
        }
        let _ = c.double_value(&[0, 0]);
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best.max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_flops_add_up_from_the_layers() {
        // Per image, forward MACs: VAE 88.1 M (encoder 26.4 M incl. FCs… see below), stem
        // 1a 5.39 M. Worked by hand: encoder convs 1.57 + 8.39 + 8.39 + 8.39 M, FCs 0.82 +
        // 0.41 M, decoder convs 18.87 × 3 + 3.54 M ⇒ trained MACs 88.1 M; ×3 passes except
        // encoder Conv2d_1 (×2): 262.7 M. Resizes: 6.88 M (fwd) + 6.88 × 2 M. Stem 1a:
        // 5.39 M × (1 + 2). Total 299.5 M MACs = 599.0 MFLOP per image.
        let one = dfc_vae_step_flops(1, 1);
        assert!((one - 599.0e6).abs() < 1.0e6, "{one}");
        // Linear in the batch; the deeper stem layers dominate at depth 3.
        assert!((dfc_vae_step_flops(32, 1) - 32.0 * one).abs() < 1.0);
        let deep = dfc_vae_step_flops(128, 3);
        assert!((deep / 1e9 - 202.6).abs() < 0.5, "{deep}");
    }

    #[test]
    fn the_result_line_is_the_last_json_line() {
        let out = "warming up\n{\"mode\": \"eager\", \"steps_per_s\": 0.25}\n";
        assert_eq!(parse_steps_per_s(out), Some(0.25));
        assert_eq!(parse_steps_per_s("no json here"), None);
    }

    #[test]
    fn the_port_trains_exactly_the_parameters_of_vaepipes_dfc_vae() {
        // The embedded port (not the file in bench/) is what `bench train` runs: one small
        // step of it must train as many weights as vaepipe's own DFC-VAE (latent 100), so a
        // layer missing or added on either side shows here.
        let python = find_python().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let script = write_script(dir.path()).unwrap();
        let out = Command::new(&python)
            .arg(&script)
            .args([
                "--batch", "2", "--depth", "1", "--steps", "1", "--warmup", "0",
            ])
            .args(["--threads", "1"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap();
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let port = value["vae_params"].as_i64().unwrap();
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let _vae = crate::models::dfc_vae::DfcVae::new(&vs.root(), 100).unwrap();
        let ours: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(port, ours, "trained parameters: the port's vs vaepipe's");
    }
}
