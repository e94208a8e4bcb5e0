//! `vaepipe bench decode`: what the data pipeline can feed a GPU — images per second through the
//! batch loader's per-image work (decode, TF's `crop_or_pad` to 160, normalise, the legacy
//! bilinear resize to 64: `facedata::batches::decode_into`, exactly what `train-vae` runs per
//! image) on 1 and 2 threads, for the synthetic CelebA JPEGs (178×218) and the CASIA PNGs
//! (182×182). Rates per core, the 1-thread row as each set's baseline in the same run, and the
//! cores that 10,000 images/s would take (issue 16: the GPU must not wait for data). Numbers,
//! never pass/fail.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use vaepipe_facedata::batches::{decode_into, BatchConfig, Resize};
use vaepipe_facedata::Sampling;

/// The rate the issue asks the pipeline to sustain.
const TARGET_IMAGES_PER_S: f64 = 10_000.0;

pub struct DecodeBench {
    /// Passes over each set per measurement.
    pub repeat: usize,
    /// The largest thread count measured (1 and this).
    pub threads: usize,
}

/// train-vae's per-image work: a 160 crop resized to the VAE's 64 px.
fn config() -> BatchConfig {
    BatchConfig {
        crop: 160,
        resize: Some(Resize {
            size: 64,
            sampling: Sampling::TfLegacy,
        }),
        ..BatchConfig::default()
    }
}

/// Decodes every path `repeat` times on `threads` threads (contiguous shares, like the loader's
/// workers) and returns a checksum of all outputs, so the work cannot be skipped and a split
/// can be checked against one thread.
pub fn decode_all(
    paths: &[PathBuf],
    config: &BatchConfig,
    threads: usize,
    repeat: usize,
) -> Result<f64> {
    let per_image = 3 * config.out_size() * config.out_size();
    let share = paths.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = paths
            .chunks(share)
            .map(|chunk| {
                s.spawn(move || -> Result<f64> {
                    let mut out = vec![0.0f32; per_image];
                    let mut sum = 0.0f64;
                    for _ in 0..repeat {
                        for path in chunk {
                            decode_into(path, config, &mut out)?;
                            sum += out.iter().map(|&v| f64::from(v)).sum::<f64>();
                        }
                    }
                    Ok(sum)
                })
            })
            .collect();
        let mut total = 0.0;
        for w in workers {
            match w.join() {
                Ok(r) => total += r?,
                Err(_) => bail!("a decode thread panicked"),
            }
        }
        Ok(total)
    })
}

/// CPU seconds this process has used, all threads (`/proc/self/stat`'s utime + stime, in
/// Linux's fixed 100 ticks a second); `None` where there is no procfs. On a loaded machine a
/// thread gets less than a core, so images per CPU-second is the per-core rate that holds
/// when the cores are the pipeline's.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
    Some((ticks(14)? + ticks(15)?) / 100.0)
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "png" || e == "jpg") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn run(b: DecodeBench) -> Result<ExitCode> {
    let scratch = tempfile::tempdir()?;
    let synth = vaepipe_facedata::synth::SynthParams {
        celeba_images: 96,
        celeba_identities: 12,
        identities: 8,
        images_per_identity: 12,
        ..Default::default()
    };
    vaepipe_facedata::synth::generate(scratch.path(), &synth, 1)?;
    let sets = [
        (
            "synthetic CelebA JPEG 178x218",
            image_files(&scratch.path().join("celeba/img_align_celeba"))?,
        ),
        (
            "synthetic CASIA PNG 182x182",
            image_files(&scratch.path().join("casia"))?,
        ),
    ];
    let config = config();
    let threads: Vec<usize> = if b.threads > 1 {
        vec![1, b.threads]
    } else {
        vec![1]
    };
    println!(
        "decode + crop_or_pad 160 + normalise + resize 64 (train-vae's per-image work), {} passes; cores on this machine: {}",
        b.repeat,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<32} {:>7} {:>10} {:>14} {:>9} {:>17}",
        "set", "threads", "images/s", "images/s/core", "vs 1 thr", "images/CPU-second"
    );
    for (name, paths) in &sets {
        if paths.is_empty() {
            bail!("the synthetic {name} set is empty");
        }
        // One untimed pass: the files are in the page cache for every row alike.
        decode_all(paths, &config, 1, 1)?;
        let mut single = None;
        let mut per_cpu_second = None;
        for &t in &threads {
            let cpu = cpu_seconds();
            let started = Instant::now();
            decode_all(paths, &config, t, b.repeat)?;
            let images = (paths.len() * b.repeat) as f64;
            let rate = images / started.elapsed().as_secs_f64();
            let per_cpu = cpu
                .zip(cpu_seconds())
                .map(|(a, z)| images / (z - a).max(0.01));
            let per_core = rate / t as f64;
            let base = *single.get_or_insert(rate);
            per_cpu_second = per_cpu_second.or(per_cpu);
            println!(
                "{name:<32} {t:>7} {rate:>10.0} {per_core:>14.0} {:>8.2}x {:>17}",
                rate / base,
                per_cpu.map_or("-".into(), |r| format!("{r:.0}"))
            );
        }
        let rate = per_cpu_second.or(single).unwrap_or(f64::NAN);
        println!(
            "{name:<32} needs {:.1} cores for {TARGET_IMAGES_PER_S:.0} images/s ({rate:.0} images/s a core)",
            TARGET_IMAGES_PER_S / rate
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn a_split_over_threads_decodes_every_image_the_same_as_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let synth = vaepipe_facedata::synth::SynthParams {
            celeba_images: 5,
            celeba_identities: 2,
            identities: 0,
            images_per_identity: 0,
            ..Default::default()
        };
        vaepipe_facedata::synth::generate(dir.path(), &synth, 1).unwrap();
        let paths = image_files(&dir.path().join("celeba/img_align_celeba")).unwrap();
        assert_eq!(paths.len(), 5);
        let config = config();
        let one = decode_all(&paths, &config, 1, 1).unwrap();
        // 5 images over 2 and 3 threads: uneven shares, each image exactly once (twice with
        // repeat 2), so the sums agree up to float summation order.
        for threads in [2, 3] {
            let split = decode_all(&paths, &config, threads, 2).unwrap();
            assert!(
                (split - 2.0 * one).abs() < 1e-6 * one.abs().max(1.0),
                "{split} vs {one}"
            );
        }
        // Each image's own sum is non-trivial, so a skipped image would show.
        let first = decode_all(&paths[..1], &config, 1, 1).unwrap();
        assert!((one - first).abs() > 1e-3, "{one} {first}");
    }
}
