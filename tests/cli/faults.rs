//! Fault tests for the cache's promises (issue 15): two runs started together on one cache
//! both succeed while each stage is computed once, and `cache verify` is clean afterwards.
//! (Kill-and-resume bitwise equality of training is `pipeline.rs`'s
//! `killed_training_resumes_to_the_same_bits_as_an_uninterrupted_run`; the whole-pipeline
//! SIGKILL-at-random-moments test of issue 15 is still to come.)

use std::process::Stdio;

use crate::support::Project;

/// Every stage of the tiny pipeline, in a few seconds: 8 steps with a checkpoint every 2.
fn config() -> String {
    crate::pipeline::TINY.replace("max_steps = 4", "max_steps = 8")
}

const RUN: [&str; 6] = ["run", "tiny.toml", "--threads", "1", "--jobs", "1"];

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
