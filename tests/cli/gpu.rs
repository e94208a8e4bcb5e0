//! Issue 16 on a machine without a GPU: `vaepipe doctor` runs its CPU checks and says there is
//! no CUDA device, `precision` changes keys only when it is not the default, and reading the
//! losses back late (what a GPU run does) changes no bit of the result.

use crate::pipeline::TINY;
use crate::support::{hash, Project};

#[test]
fn doctor_without_cuda_runs_the_cpu_checks_says_so_and_passes() {
    if tch::Cuda::is_available() {
        return; // this test is about the CPU-only machine; a GPU machine has gpu-check.sh
    }
    let p = Project::new();
    let r = p.ok(&["doctor"]);
    let out = r.stdout;
    for expected in [
        "libtorch loaded ",
        "CUDA: no CUDA device",
        "TF32 now: cuBLAS off, cuDNN",
        "HDF5: ",
        "threads: libtorch intra-op",
        "ok   conv forward fp32 cpu: max relative difference",
        "ok   train-vae 20 steps cpu: total loss",
        "no CUDA device: GPU checks and the throughput probe skipped",
        "all checks passed",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    // Asking for a GPU where there is none is a failure that says what to do.
    let r = p.run(&["doctor", "--require-cuda"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("FAIL CUDA device"), "{}", r.stdout);
    assert!(
        r.stdout.contains("what to do: check `nvidia-smi`"),
        "{}",
        r.stdout
    );
}

/// The `key` line of `stage` in `vaepipe plan -v`.
fn key_of(p: &Project, stage: &str) -> String {
    let r = p.ok(&["plan", "tiny.toml", "-v"]);
    let mut lines = r
        .stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(stage));
    lines
        .find_map(|l| l.trim().strip_prefix("key").map(|k| k.trim().to_owned()))
        .unwrap_or_else(|| panic!("no key for `{stage}` in:\n{}", r.stdout))
}

#[test]
fn precision_changes_keys_only_when_it_is_not_fp32() {
    let p = Project::new();
    p.file("tiny.toml", TINY);
    let (train, encode) = (key_of(&p, "train"), key_of(&p, "encode"));
    let with = |train_precision: &str, encode_precision: &str| {
        TINY.replace(
            "initial_learning_rate = 0.001",
            &format!("initial_learning_rate = 0.001\nprecision = \"{train_precision}\""),
        )
        .replace(
            "batch_size = 16",
            &format!("batch_size = 16\nprecision = \"{encode_precision}\""),
        )
    };
    p.file("tiny.toml", &with("fp32", "fp32"));
    assert_eq!(
        key_of(&p, "train"),
        train,
        "an explicit fp32 is the default"
    );
    assert_eq!(key_of(&p, "encode"), encode);
    p.file("tiny.toml", &with("bf16", "fp32"));
    assert_ne!(
        key_of(&p, "train"),
        train,
        "bf16 changes results, so the key"
    );
    p.file("tiny.toml", &with("fp32", "tf32"));
    assert_eq!(key_of(&p, "train"), train);
    assert_ne!(key_of(&p, "encode"), encode);
    p.file("tiny.toml", &with("fp16", "fp32"));
    let r = p.run(&["plan", "tiny.toml"]);
    assert_ne!(r.code, 0);
    for expected in ["`fp16`", "`precision`", "tiny.toml:"] {
        assert!(r.stderr.contains(expected), "{}", r.stderr);
    }
}

/// The metrics lines without their timings.
pub(crate) fn losses(p: &Project) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(p.path("runs/tiny/train/metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("data_wait_ms");
            o.remove("step_ms");
            v
        })
        .collect()
}

#[test]
fn reading_losses_back_every_few_steps_changes_no_bit() {
    // 7 steps, saves at 3, 6 and 7: read-backs every 2 steps cross the saves unevenly.
    let config = TINY
        .replace("max_steps = 4", "max_steps = 7")
        .replace("save_every = 2", "save_every = 3");
    let run = |read_every: &str| {
        let p = Project::new();
        p.file("tiny.toml", &config);
        let mut c = p.command(&["run", "tiny.toml", "--only", "train", "--threads", "1"]);
        let out = c
            .env("VAEPIPE_LOSS_READ_EVERY", read_every)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    };
    let (every, late) = (run("1"), run("2"));
    let lines = losses(&every);
    assert_eq!(lines.len(), 7);
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=7).collect::<Vec<_>>());
    assert_eq!(losses(&late), lines, "the same losses, in step order");
    for file in ["vae.safetensors", "logs.h5"] {
        assert_eq!(
            hash(&every.path(&format!("runs/tiny/train/{file}"))),
            hash(&late.path(&format!("runs/tiny/train/{file}"))),
            "{file}"
        );
    }
}
