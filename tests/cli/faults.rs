//! Fault tests for the cache's promises (issue 15): the tiny pipeline killed with SIGKILL at
//! seeded moments (one in start-up, seven spread over its stages) and rerun until it completes
//! ends byte-identical to an uninterrupted run (CPU, one thread), with every committed entry
//! intact and `cache verify` clean after every kill; and two runs started together on one
//! cache both succeed while each stage is computed once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
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
    matches!(name, "manifest.json" | "metrics.jsonl" | "metrics.json") || rel == "report.html"
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
            } else if rel.contains("events.out.tfevents") {
                // TensorBoard's Event records carry a wall_time (a fixed 8-byte double): the
                // same events give the same length, whenever they were written.
                let size = std::fs::metadata(&path).unwrap().len();
                out.insert(rel, format!("{size} bytes"));
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

/// The tiny pipeline's stages, in the order `--jobs 1` runs them.
const STAGES: [&str; 6] = ["faces", "check", "train", "encode", "vectors", "render"];

/// Which stage a log line says has started computing (a miss), if any.
fn started(line: &str) -> Option<usize> {
    STAGES
        .iter()
        .position(|s| line.contains(&format!("stage `{s}` started (miss")))
}

/// Spawns the run with its stderr read line by line on a thread (so the pipe never fills).
fn spawn_logged(p: &Project) -> (Child, Receiver<String>) {
    let mut child = p
        .command(&RUN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn killed_at_random_moments_then_finished_equals_an_uninterrupted_run() {
    // The uninterrupted run, timing each stage from its start to the next one's (or the end).
    let whole = Project::new();
    whole.file("tiny.toml", &config());
    let spawned = Instant::now();
    let (mut child, lines) = spawn_logged(&whole);
    let mut starts = Vec::new();
    let mut log = Vec::new();
    for line in lines.iter() {
        if let Some(s) = started(&line) {
            starts.push((s, Instant::now()));
        }
        log.push(line);
    }
    let status = child.wait().unwrap();
    let end = Instant::now();
    assert!(status.success(), "{}", log.join("\n"));
    let order: Vec<usize> = starts.iter().map(|s| s.0).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5], "{}", log.join("\n"));
    let durations: Vec<Duration> = (0..STAGES.len())
        .map(|i| starts.get(i + 1).map_or(end, |n| n.1) - starts[i].1)
        .collect();
    let start_up = starts[0].1 - spawned;
    let expected = artifact_hashes(&whole);
    assert!(expected.len() > 50, "{} files", expected.len());

    // Then seven kill moments spread over the run: one or two in each stage, each at a seeded
    // fraction of that stage's duration after the stage starts (or after a later stage
    // starts, when a resumed run gets past it first; or as the next stage starts, when the
    // stage ends sooner than it did). Progress, not wall time, places them, so a loaded
    // machine moves the moments but not the stages they fall in.
    let killed = Project::new();
    killed.file("tiny.toml", &config());
    let mut state = 0x15_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let points: Vec<(usize, f64)> = (0..7)
        .map(|i| {
            (
                i * STAGES.len() / 7,
                0.1 + (next(&mut state) % 800) as f64 / 1000.0,
            )
        })
        .collect();
    // First a kill during start-up (before or just after `cache/` exists): `cache verify` must
    // call that a clean, empty cache.
    let fraction = 0.1 + (next(&mut state) % 800) as f64 / 1000.0;
    let (mut child, _lines) = spawn_logged(&killed);
    std::thread::sleep(start_up.mul_f64(fraction));
    let mut kills = usize::from(child.try_wait().unwrap().is_none());
    child.kill().ok(); // SIGKILL
    child.wait().unwrap();
    let mut attempts = vec![format!("start-up: killed at {:.0}%", fraction * 100.0)];
    assert_nothing_half_committed(&killed, "after a kill during start-up");
    for (i, &(stage, fraction)) in points.iter().enumerate() {
        let (mut child, lines) = spawn_logged(&killed);
        let mut kill_at: Option<Instant> = None;
        let mut at_stage = stage;
        let mut finished = false;
        loop {
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            match lines.recv_timeout(Duration::from_millis(2)) {
                Ok(line) => match (started(&line), kill_at) {
                    (Some(s), None) if s >= stage => {
                        at_stage = s;
                        kill_at = Some(Instant::now() + durations[s].mul_f64(fraction));
                    }
                    // The stage finished sooner than in the uninterrupted run (a quieter
                    // machine): kill as the next one begins, just after its commit.
                    (Some(s), Some(_)) if s > at_stage => break,
                    _ => {}
                },
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    finished = true; // stderr closed: the run is exiting on its own
                    break;
                }
            }
        }
        kills += usize::from(!finished);
        attempts.push(format!(
            "{i}: {} at {:.0}% of `{}`",
            if finished { "finished first" } else { "killed" },
            fraction * 100.0,
            if kill_at.is_some() {
                STAGES[at_stage]
            } else {
                "(no stage started)"
            }
        ));
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let after = format!(
            "after kill {i} at {:.0}% of `{}` ({} entries committed)",
            fraction * 100.0,
            STAGES[at_stage],
            committed_entries(&killed)
        );
        assert_nothing_half_committed(&killed, &after);
    }
    assert!(
        kills >= 6,
        "only {kills} of the 8 runs were still going when killed: {attempts:?}; stage durations {durations:?}"
    );
    eprintln!("kill-at-random: {attempts:?}");
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
