//! `vaepipe bench align`: aligned images per second on the CPU — the `align` stage's decode,
//! MTCNN detection and crop on its worker threads — against facenet-pytorch's MTCNN on the same
//! images in the same run (`scripts/bench/align_baseline.py`, in the venv that
//! `scripts/bench/setup-align-baseline.sh` makes), printed as a ratio. Numbers, never pass/fail.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::models::mtcnn;
use crate::stages::align::{align_in_memory, AlignParams};

pub struct AlignBench {
    pub threads: usize,
    pub repeat: usize,
    pub images: Option<PathBuf>,
    pub weights: PathBuf,
    pub baseline_python: Option<PathBuf>,
}

pub fn run(b: AlignBench) -> Result<ExitCode> {
    let scratch = tempfile::tempdir()?;
    let paths = match &b.images {
        Some(dir) => image_files(dir)?,
        None => synthetic_images(scratch.path())?,
    };
    if paths.is_empty() {
        bail!("no images to benchmark");
    }
    let tensors = mtcnn::read_weights(&b.weights).with_context(|| {
        format!(
            "cannot read MTCNN weights from {} (run scripts/fetch-mtcnn.sh)",
            b.weights.display()
        )
    })?;
    let params = AlignParams::default();
    println!(
        "align: {} images x {} repeats, {} threads, image_size {} margin {}",
        paths.len(),
        b.repeat,
        b.threads,
        params.image_size,
        params.margin
    );
    // Warm-up pass, then the timed ones.
    align_in_memory(&paths[..1], &tensors, &b.weights, &params, 1)?;
    let repeated: Vec<PathBuf> = (0..b.repeat).flat_map(|_| paths.iter().cloned()).collect();
    let start = Instant::now();
    let faces = align_in_memory(&repeated, &tensors, &b.weights, &params, b.threads)?;
    let ours = repeated.len() as f64 / start.elapsed().as_secs_f64();
    println!("vaepipe align          {ours:8.2} images/s  ({faces} with a face)");

    let python = match &b.baseline_python {
        Some(p) => p.clone(),
        None => {
            let out = Command::new("scripts/bench/setup-align-baseline.sh")
                .output()
                .context("cannot run scripts/bench/setup-align-baseline.sh (run from the repository root, or pass --baseline-python)")?;
            if !out.status.success() {
                bail!(
                    "setup-align-baseline.sh failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let out = Command::new(&python)
        .arg("scripts/bench/align_baseline.py")
        .args([
            "--threads",
            &b.threads.to_string(),
            "--repeat",
            &b.repeat.to_string(),
        ])
        .args(&paths)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the facenet-pytorch baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or(""))
        .with_context(|| format!("unexpected baseline output: {line}"))?;
    let theirs = v["images"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "facenet-pytorch MTCNN  {theirs:8.2} images/s  ({} with a face)",
        v["faces"]
    );
    println!("ratio vaepipe / facenet-pytorch: {:.2}x", ours / theirs);
    Ok(ExitCode::SUCCESS)
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| vaepipe_facedata::has_image_extension(p))
        .collect();
    out.sort();
    Ok(out)
}

/// 24 synthetic in-the-wild photos (the `synth-faces` wild layout), as JPEGs.
fn synthetic_images(dir: &Path) -> Result<Vec<PathBuf>> {
    vaepipe_facedata::wild::write_wild(dir, 666, 6, 4, 90)?;
    let mut out = Vec::new();
    for k in 0..6 {
        out.extend(image_files(
            &dir.join(vaepipe_facedata::synth::casia_identity_name(k)),
        )?);
    }
    Ok(out)
}
