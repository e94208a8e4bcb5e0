//! Fault tests for the cache's promises (issue 15): a tiny pipeline killed with SIGKILL at
//! seeded random moments and then finished ends byte-identical to an uninterrupted run (CPU,
//! one thread), with `cache verify` clean after every kill; and two runs started together on
//! one cache both succeed while each stage is computed once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{hash, Project};

/// Every stage of the tiny pipeline, in a few seconds: 8 steps with a checkpoint every 2.
fn config() -> String {
    crate::pipeline::TINY.replace("max_steps = 4", "max_steps = 8")
}

const RUN: [&str; 6] = ["run", "tiny.toml", "--threads", "1", "--jobs", "1"];

/// Files whose bytes record how a run went (timestamps, durations, per-step timings) rather
/// than what it computed; everything else must be identical.
fn records_timing(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    matches!(
        name,
        "manifest.json" | "metrics.jsonl" | "metrics.json" | "logs.h5" | "loss_curve.png"
    )
}

/// Relative path → blake3 of every file under each `runs/tiny/<stage>` (following the links).
fn artifact_hashes(p: &Project) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let root = p.path("runs/tiny");
    let mut stack: Vec<PathBuf> = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(&root).unwrap().display().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if !records_timing(&rel) && rel != "report.html" {
                out.insert(rel, hash(&path));
            }
        }
    }
    out
}

/// xorshift64*: the kill moments are a function of the seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn entries_without_manifest(cache: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache.join("entries")) else {
        return Vec::new();
    };
    let mut bad = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        if dir.is_dir() && !dir.join("manifest.json").is_file() {
            bad.push(dir);
        }
    }
    bad
}

#[test]
fn killed_at_random_moments_then_finished_equals_an_uninterrupted_run() {
    let whole = Project::new();
    whole.file("tiny.toml", &config());
    let started = Instant::now();
    whole.ok(&RUN);
    let total = started.elapsed();
    let expected = artifact_hashes(&whole);
    assert!(expected.len() > 100, "{} files", expected.len());

    let killed = Project::new();
    killed.file("tiny.toml", &config());
    let mut state = 0x15_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut kills = 0;
    for _ in 0..6 {
        let fraction = 0.05 + (next(&mut state) % 900) as f64 / 1000.0;
        let mut child = killed
            .command(&RUN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + total.mul_f64(fraction);
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        assert!(
            entries_without_manifest(&killed.path("cache")).is_empty(),
            "a kill left an entry without a manifest"
        );
        let verify = killed.run(&["cache", "verify"]);
        assert_eq!(verify.code, 0, "after a kill: {}", verify.all());
    }
    assert!(
        kills >= 5,
        "only {kills} of the runs were still going when killed"
    );
    killed.ok(&RUN);
    killed.ok(&["cache", "verify"]);
    let got = artifact_hashes(&killed);
    let differ: Vec<&String> = expected
        .keys()
        .filter(|k| got.get(*k) != expected.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "files that differ or are missing: {differ:?}"
    );
    assert_eq!(got.len(), expected.len());
}

#[test]
fn two_concurrent_runs_on_one_cache_both_succeed_and_compute_each_stage_once() {
    let p = Project::new();
    p.file("tiny.toml", &config());
    let spawn = |log: &str| {
        p.command(&RUN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p.path(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut first = spawn("first.log");
    let mut second = spawn("second.log");
    let (a, b) = (first.wait().unwrap(), second.wait().unwrap());
    let logs = [
        std::fs::read_to_string(p.path("first.log")).unwrap(),
        std::fs::read_to_string(p.path("second.log")).unwrap(),
    ];
    assert!(a.success() && b.success(), "{}\n---\n{}", logs[0], logs[1]);
    for stage in ["faces", "check", "train", "encode", "vectors", "render"] {
        let started = format!("stage `{stage}` started (miss");
        let runs: usize = logs.iter().map(|l| l.matches(&started).count()).sum();
        assert_eq!(
            runs, 1,
            "`{stage}` ran {runs} times:\n{}\n---\n{}",
            logs[0], logs[1]
        );
    }
    p.ok(&["cache", "verify"]);
}
