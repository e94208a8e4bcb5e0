//! Throughput of the face-data pipeline, printed as a table (`cargo bench -p vaepipe-facedata`).
//!
//! Measures images/s of synth-faces generation, and of decode + 160 crop + normalise (what every
//! training batch costs) for 178×218 JPEGs and 182×182 PNGs, each with one thread and with all
//! threads; ratios are against the one-thread row measured in the same run. Not a timed test.

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use vaepipe_facedata::batches::{decode_into, BatchConfig};
use vaepipe_facedata::{generate, CelebA, IdentityFolders, SynthParams};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| panic!("cannot build a {threads}-thread pool: {e}"))
}

fn decode_rate(paths: &[PathBuf], threads: usize) -> f64 {
    let config = BatchConfig::default();
    let per = 3 * 160 * 160;
    let t = Instant::now();
    pool(threads).install(|| {
        paths.par_iter().for_each(|p| {
            let mut out = vec![0.0f32; per];
            if let Err(e) = decode_into(p, &config, &mut out) {
                panic!("{e}");
            }
        })
    });
    paths.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let all = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let params = SynthParams {
        celeba_images: 400,
        celeba_identities: 40,
        identities: 16,
        images_per_identity: 25,
        ..SynthParams::default()
    };
    let n_synth = params.celeba_images + params.identities * params.images_per_identity;
    let mut rows: Vec<(String, usize, f64)> = Vec::new();
    let mut dir = None;
    for threads in [1, all] {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let t = Instant::now();
        pool(threads)
            .install(|| generate(d.path(), &params, 1))
            .unwrap_or_else(|e| panic!("{e}"));
        rows.push((
            "synth-faces (178x218 JPEG + 182x182 PNG)".into(),
            threads,
            n_synth as f64 / t.elapsed().as_secs_f64(),
        ));
        dir = Some(d);
    }
    let Some(dir) = dir else { return };
    let celeba = CelebA::open(&dir.path().join("celeba"))
        .unwrap_or_else(|e| panic!("{e}"))
        .image_paths();
    let casia = IdentityFolders::open(&dir.path().join("casia"))
        .unwrap_or_else(|e| panic!("{e}"))
        .image_paths();
    for (name, paths) in [
        ("decode+crop+normalise 178x218 JPEG", &celeba),
        ("decode+crop+normalise 182x182 PNG", &casia),
    ] {
        decode_rate(&paths[..paths.len().min(32)], 1); // warm the page cache
        for threads in [1, all] {
            rows.push((name.into(), threads, decode_rate(paths, threads)));
        }
    }
    println!(
        "{:<42} {:>7} {:>10} {:>8}",
        "benchmark", "threads", "images/s", "vs 1"
    );
    let mut base = 0.0;
    for (name, threads, rate) in rows {
        if threads == 1 {
            base = rate;
        }
        println!("{name:<42} {threads:>7} {rate:>10.0} {:>7.2}x", rate / base);
    }
}
