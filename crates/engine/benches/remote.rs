//! `cargo bench -p vaepipe-engine --bench remote`: the remote cache on loopback S3 (moto from
//! `scripts/s3/start-moto.sh`; skipped, saying so, without `VAEPIPE_S3_ENDPOINT`), every number
//! as a ratio against a baseline measured in the same run.
//!
//! 1. Push and pull throughput of one 64 MiB entry (4 files of 16 MiB: multipart up, streamed
//!    and hashed down) against copying the same files on the local disk.
//! 2. With `VAEPIPE_BENCH_VAEPIPE=<path to the vaepipe binary>`: serving the demo's `train`
//!    entry (and its upstream `faces`, `check`) from the remote into a fresh cache, against
//!    computing them (`run experiments/demo.toml --only train`, with
//!    `VAEPIPE_BENCH_TRAIN_STEPS` steps, default 100 of the demo's 1600; the entry's size does
//!    not depend on the steps, so serving it costs the same at 1600).

#![allow(clippy::unwrap_used)] // a benchmark: a panic is a failed measurement

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vaepipe_engine::cache::remote::{PullOutcome, Remote};
use vaepipe_engine::cache::CacheStore;
use vaepipe_engine::progress::ProgressMode;

const FILES: usize = 4;
const FILE_BYTES: usize = 16 * 1024 * 1024;

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn set_writer_env() -> Option<(String, String)> {
    let endpoint = std::env::var("VAEPIPE_S3_ENDPOINT").ok()?;
    let bucket = std::env::var("VAEPIPE_S3_BUCKET").ok()?;
    let writer = std::env::var("VAEPIPE_S3_WRITER").ok()?;
    let (key, secret) = writer.split_once(':')?;
    // SAFETY-free: a single-threaded benchmark binary sets its own environment before any
    // thread starts.
    std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", key);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
    std::env::set_var("AWS_REGION", "us-east-1");
    Some((endpoint, bucket))
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bench-{name}-{nanos}")
}

/// One committed local entry of FILES × FILE_BYTES pseudo-random bytes.
fn make_entry(store: &CacheStore) -> vaepipe_engine::cache::Artifact {
    use vaepipe_engine::cache::{KeyPreimage, Lookup, Manifest};
    let preimage = KeyPreimage {
        format: vaepipe_engine::cache::key::KEY_FORMAT,
        kind: "bench".into(),
        kind_version: 1,
        params: serde_json::json!({ "nanos": unique("entry") }),
        seed: 0,
        upstream: Default::default(),
        inputs: Default::default(),
    };
    let key = preimage.key();
    let Lookup::Miss(lock) = store.lookup(&key, || {}).unwrap() else {
        panic!("fresh key")
    };
    let pending = store.begin(lock).unwrap();
    let mut state = 0x1234_5678_9abc_def1u64;
    for f in 0..FILES {
        let mut bytes = Vec::with_capacity(FILE_BYTES);
        while bytes.len() < FILE_BYTES {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        std::fs::write(pending.tmp_dir.join(format!("f{f}.bin")), &bytes).unwrap();
    }
    let manifest = Manifest {
        manifest_format: vaepipe_engine::cache::manifest::MANIFEST_FORMAT,
        key: key.clone(),
        stage: "bench".into(),
        experiment: "bench".into(),
        kind: "bench".into(),
        kind_version: 1,
        params: preimage.params.clone(),
        preimage,
        upstream: Default::default(),
        inputs: Default::default(),
        overrides: Vec::new(),
        outputs: Vec::new(),
        started_at: String::new(),
        finished_at: String::new(),
        duration_s: 0.0,
        tool_version: "bench".into(),
        device: "cpu".into(),
        threads: None,
        notes: Default::default(),
        family: None,
        warm_start_from: None,
    };
    store.commit(pending, manifest).unwrap()
}

fn throughput(bucket: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let a = CacheStore::open(&tmp.path().join("a")).unwrap();
    let b = CacheStore::open(&tmp.path().join("b")).unwrap();
    let entry = make_entry(&a);
    let total = FILES * FILE_BYTES;

    let copy_dir = tmp.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let t = Instant::now();
    for out in &entry.manifest.outputs {
        std::fs::copy(entry.dir.join(&out.path), copy_dir.join(&out.path)).unwrap();
    }
    let copy = t.elapsed();

    let url = format!("s3://{bucket}/{}", unique("throughput"));
    let remote = Remote::open(&url, ProgressMode::Hidden).unwrap();
    let t = Instant::now();
    remote.push(&entry, "bench").unwrap();
    let push = t.elapsed();
    let t = Instant::now();
    let pulled = remote.pull(&b, &entry.key, "bench").unwrap();
    let pull = t.elapsed();
    assert!(matches!(pulled, PullOutcome::Pulled(_)));

    println!("remote/loopback 64 MiB entry (4 × 16 MiB, multipart), moto on 127.0.0.1:");
    println!(
        "  local copy (baseline)  {:8.1} MiB/s  1.00",
        mib_per_s(total, copy)
    );
    println!(
        "  push                   {:8.1} MiB/s  {:.3} of the copy's rate",
        mib_per_s(total, push),
        copy.as_secs_f64() / push.as_secs_f64()
    );
    println!(
        "  pull (verified)        {:8.1} MiB/s  {:.3} of the copy's rate",
        mib_per_s(total, pull),
        copy.as_secs_f64() / pull.as_secs_f64()
    );
}

fn run_vaepipe(bin: &Path, dir: &Path, cache: &Path, url: &str, extra: &[&str]) -> Duration {
    let steps = std::env::var("VAEPIPE_BENCH_TRAIN_STEPS").unwrap_or_else(|_| "100".into());
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/demo.toml");
    let t = Instant::now();
    let status = Command::new(bin)
        .current_dir(dir)
        .args(["-q", "--cache-dir"])
        .arg(cache)
        .args(["--remote", url, "run"])
        .arg(&demo)
        .args(["--only", "train", "--set"])
        .arg(format!("stage.train.max_steps={steps}"))
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "vaepipe failed");
    t.elapsed()
}

fn serve_vs_recompute(bin: &Path, bucket: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/{}", unique("demo-train"));
    let compute = run_vaepipe(bin, tmp.path(), &tmp.path().join("a"), &url, &["--push"]);
    let serve = run_vaepipe(bin, tmp.path(), &tmp.path().join("b"), &url, &[]);
    let steps = std::env::var("VAEPIPE_BENCH_TRAIN_STEPS").unwrap_or_else(|_| "100".into());
    println!("remote/demo train entry (faces, check, train at {steps} steps):");
    println!(
        "  compute here and push (baseline)  {:7.2}s  1.00",
        compute.as_secs_f64()
    );
    println!(
        "  serve from the remote              {:7.2}s  {:.3} of computing",
        serve.as_secs_f64(),
        serve.as_secs_f64() / compute.as_secs_f64()
    );
}

fn main() {
    // `cargo test --benches` runs benches with `--bench`-less args; measure only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some((_, bucket)) = set_writer_env() else {
        println!("remote: SKIPPED (no VAEPIPE_S3_ENDPOINT: eval \"$(scripts/s3/start-moto.sh)\")");
        return;
    };
    throughput(&bucket);
    if let Some(bin) = std::env::var_os("VAEPIPE_BENCH_VAEPIPE") {
        serve_vs_recompute(Path::new(&bin), &bucket);
    } else {
        println!(
            "remote/demo train entry: SKIPPED (set VAEPIPE_BENCH_VAEPIPE to the vaepipe binary)"
        );
    }
}
