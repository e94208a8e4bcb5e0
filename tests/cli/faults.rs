//! Fault tests for the cache's promises (issue 15): the tiny pipeline killed with SIGKILL at
//! seeded moments spread over its run and rerun until it completes ends byte-identical to an
//! uninterrupted run (CPU, one thread), with every committed entry intact after every kill;
//! and two runs started together on one cache both succeed while each stage is computed once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{hash, Project};

/// Every stage of the tiny pipeline, in a few seconds: 8 steps with a checkpoint every 2.
fn config() -> String {
    crate::pipeline::TINY.replace("max_steps = 4", "max_steps = 8")
}

const RUN: [&str; 6] = ["run", "tiny.toml", "--threads", "1", "--jobs", "1"];

/// Files whose bytes record how a run went (wall-clock timestamps, durations, per-step
/// timings) rather than what it computed; every other output must be identical.
fn records_timing(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    matches!(
        name,
        "manifest.json" | "metrics.jsonl" | "metrics.json"
    ) || rel == "report.html"
}

/// Relative path → blake3 of every file under `runs/tiny` (following the entry links).
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
            } else if !records_timing(&rel) {
                out.insert(rel, hash(&path));
            }
        }
    }
    out
}

/// xorshift64*: the kill moments are a function of the seed alone.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// What a kill may leave and what it may not: nothing under `cache/entries` without a
/// manifest (a commit is one rename of a finished directory), every link under `runs/` points
/// at such an entry, and `cache verify` re-hashes every entry clean.
fn assert_nothing_half_committed(p: &Project, after: &str) {
    if let Ok(entries) = std::fs::read_dir(p.path("cache/entries")) {
        for e in entries.flatten() {
            assert!(
                e.path().join("manifest.json").is_file(),
                "{after}: entry {} has no manifest",
                e.path().display()
            );
        }
    }
    if let Ok(stages) = std::fs::read_dir(p.path("runs/tiny")) {
        for s in stages.flatten() {
            let link = s.path();
            if link.is_symlink() {
                let target = std::fs::canonicalize(&link).unwrap();
                assert!(
                    target.join("manifest.json").is_file(),
                    "{after}: `{}` serves {} without a manifest",
                    link.display(),
                    target.display()
                );
            }
        }
    }
    let verify = p.run(&["cache", "verify"]);
    assert_eq!(verify.code, 0, "{after}: {}", verify.all());
    assert!(verify.stdout.contains(", 0 damaged"), "{}", verify.stdout);
}

fn committed_entries(p: &Project) -> usize {
    std::fs::read_dir(p.path("cache/entries")).map_or(0, |d| d.count())
}

#[test]
fn killed_at_random_moments_then_finished_equals_an_uninterrupted_run() {
    let whole = Project::new();
    whole.file("tiny.toml", &config());
    let started = Instant::now();
    whole.ok(&RUN);
    let total = started.elapsed();
    // A rerun with everything fresh: the start-up and planning every killed run pays again.
    let started = Instant::now();
    whole.ok(&RUN);
    let overhead = started.elapsed();
    let expected = artifact_hashes(&whole);
    assert!(expected.len() > 50, "{} files", expected.len());

    // Seven kill points spread over the uninterrupted run's duration (sorted fractions of it);
    // each killed run gets the gap to the next point plus the start-up it repeats.
    let killed = Project::new();
    killed.file("tiny.toml", &config());
    let mut state = 0x15_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut points: Vec<f64> = (0..7)
        .map(|_| 0.05 + (next(&mut state) % 900) as f64 / 1000.0)
        .collect();
    points.sort_by(f64::total_cmp);
    let (mut kills, mut previous) = (0, 0.0);
    for (i, point) in points.iter().enumerate() {
        let wait = overhead + total.mul_f64(point - previous);
        previous = *point;
        let mut child = killed
            .command(&RUN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let after = format!(
            "after kill {i} at {:.0}% ({} entries committed)",
            point * 100.0,
            committed_entries(&killed)
        );
        assert_nothing_half_committed(&killed, &after);
    }
    assert!(
        kills >= 5,
        "only {kills} of the 7 runs were still going when killed"
    );
    killed.ok(&RUN);
    assert_nothing_half_committed(&killed, "after the finishing run");
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
