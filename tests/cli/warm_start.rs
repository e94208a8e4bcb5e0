//! Warm start on the real `train-vae` (issue 19): 4 steps continued to 12 equal 12 steps from
//! scratch in a fresh cache, output for output (CPU, one thread), under the from-scratch key,
//! with `warm_start_from` in the manifest; `plan` says where it starts, and only for a lower
//! budget of the same configuration; `verify` recomputes the warm-started entry from scratch.
//! A halving sweep's finalist continues its own rung-0 training to the same bits and key.
//! The engine's side (another param, a larger budget, a non-extendable kind, a damaged source,
//! a kill) is tested on test kinds in `crates/engine/tests/warm_start.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::gpu::losses;
use crate::pipeline::TINY;
use crate::support::Project;

/// TINY's data, check and train stages; saves every 3 steps, so step 4 is off the schedule.
fn config(steps: u64, extra: &str) -> String {
    let upto_train = &TINY[..TINY.find("[stage.encode]").unwrap()];
    format!(
        "{}{extra}\n",
        upto_train
            .replace("max_steps = 4", &format!("max_steps = {steps}"))
            .replace("save_every = 2", "save_every = 3")
    )
}

fn train(p: &Project) -> PathBuf {
    std::fs::canonicalize(p.path("runs/tiny/train")).unwrap()
}

fn key(p: &Project) -> String {
    train(p).file_name().unwrap().to_string_lossy().into_owned()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Files whose bytes hold wall-clock readings (step timings, event times).
const TIMED: [&str; 2] = ["events.out.tfevents.0.vaepipe", "metrics.jsonl"];

/// Each output's blake3 from the manifest, the timed files left out.
fn outputs(dir: &Path) -> BTreeMap<String, String> {
    manifest(dir)["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["path"].as_str().unwrap().to_owned(),
                o["blake3"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(path, _)| !TIMED.contains(&path.as_str()))
        .collect()
}

#[test]
fn train_vae_continued_from_4_to_12_steps_equals_12_steps_from_scratch() {
    let p = Project::new();
    p.file("tiny.toml", &config(4, ""));
    p.ok(&["run", "tiny.toml", "--threads", "1"]);
    let short = key(&p);

    // Another param, or a lower budget: nothing to continue.
    p.file("tiny.toml", &config(12, "beta = 0.25"));
    let plan = p.ok(&["plan", "tiny.toml"]);
    assert!(!plan.stdout.contains("warm start"), "{}", plan.stdout);
    p.file("tiny.toml", &config(3, ""));
    let plan = p.ok(&["plan", "tiny.toml"]);
    assert!(!plan.stdout.contains("warm start"), "{}", plan.stdout);

    p.file("tiny.toml", &config(12, ""));
    let plan = p.ok(&["plan", "tiny.toml"]);
    let said = format!("warm start from {} (max_steps 4)", &short[..12]);
    assert!(plan.stdout.contains(&said), "{}", plan.stdout);
    let r = p.ok(&["run", "tiny.toml", "--threads", "1", "-v"]);
    assert!(r.stderr.contains(&said), "{}", r.stderr);
    assert!(r.stderr.contains("resuming from step 4"), "{}", r.stderr);
    let warm = train(&p);
    let m = manifest(&warm);
    assert_eq!(m["warm_start_from"]["key"], short.as_str());
    assert_eq!(m["warm_start_from"]["budget"], 4);

    let scratch = Project::new();
    scratch.file("tiny.toml", &config(12, ""));
    scratch.ok(&["run", "tiny.toml", "--threads", "1"]);
    assert_eq!(key(&p), key(&scratch), "filed under the from-scratch key");
    let (got, want) = (outputs(&warm), outputs(&train(&scratch)));
    assert!(
        want.contains_key("vae.safetensors")
            && want.contains_key("checkpoints/step-000012/optimizer.safetensors"),
        "{want:?}"
    );
    assert!(
        !got.contains_key("reconstructed_000004.png"),
        "the short run's off-schedule grids are not carried over"
    );
    assert_eq!(got, want, "every output has the from-scratch bits");
    assert_eq!(losses(&p), losses(&scratch), "every step's losses");

    // `verify` trains the entry again from scratch: only the timed files differ.
    p.ok(&["lock", "tiny.toml"]);
    let v = p.run(&["verify", "tiny.toml", "--stage", "train"]);
    let differing: Vec<&str> = v
        .stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('`'))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert_eq!(differing, TIMED, "{}", v.all());
}

/// A halving sweep of the real pipeline up to the probes: 3 random (alfa, beta) at 2 steps, the
/// best by probe accuracy continued to 6. The finalist warm-starts from its own rung-0 entry and
/// is bitwise the 6-step run a fresh cache computes from its params, under the same key.
#[test]
fn halvings_finalist_continues_its_rung_0_training_to_the_from_scratch_bits() {
    let upto_vectors = &TINY[..TINY.find("[stage.render]").unwrap()];
    let sweep = "[sweep]\nstrategy = \"halving\"\nseed = 3\nobjective = \"vectors.probe_average_accuracy\"\ngoal = \"max\"\ntrials = 3\nspace.\"stage.train.alfa\" = { log_uniform = [0.1, 10.0] }\nspace.\"stage.train.beta\" = { uniform = [0.1, 1.0] }\nbudget = { param = \"stage.train.max_steps\", min = 2, max = 6, eta = 3 }\n";
    let p = Project::new();
    p.file("tiny.toml", &format!("{upto_vectors}\n{sweep}"));
    let r = p.ok(&["run", "tiny.toml", "--threads", "1", "-v"]);

    // Four trials: three at rung 0, one promoted; only the promoted one continues.
    let mut trains: Vec<(PathBuf, serde_json::Value)> = std::fs::read_dir(p.path("runs/tiny"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::canonicalize(e.path().join("train")).ok())
        .map(|dir| {
            let m = manifest(&dir);
            (dir, m)
        })
        .collect();
    trains.sort_by_key(|(_, m)| m["params"]["max_steps"].as_u64());
    let budgets: Vec<u64> = trains
        .iter()
        .map(|(_, m)| m["params"]["max_steps"].as_u64().unwrap())
        .collect();
    assert_eq!(budgets, [2, 2, 2, 6], "{}", r.all());
    let (warm, m) = trains.pop().unwrap();
    assert_eq!(m["warm_start_from"]["budget"], 2, "{m}");
    let source = m["warm_start_from"]["key"].as_str().unwrap();
    let (from, _) = trains
        .iter()
        .find(|(d, _)| d.file_name().unwrap().to_string_lossy().starts_with(source))
        .unwrap_or_else(|| panic!("the source {source} is a rung-0 trial"));
    assert_eq!(manifest(from)["params"]["alfa"], m["params"]["alfa"]);
    assert!(trains
        .iter()
        .all(|(_, m)| m.get("warm_start_from").is_none()));
    assert!(r.stderr.contains("resuming from step 2"), "{}", r.stderr);

    // The same params from scratch, in a fresh cache: same key, same bits.
    let (alfa, beta) = (
        m["params"]["alfa"].as_f64().unwrap(),
        m["params"]["beta"].as_f64().unwrap(),
    );
    let scratch = Project::new();
    let upto_train = &TINY[..TINY.find("[stage.encode]").unwrap()];
    scratch.file(
        "tiny.toml",
        &format!(
            "{}alfa = {alfa:?}\nbeta = {beta:?}\n",
            upto_train.replace("max_steps = 4", "max_steps = 6")
        ),
    );
    scratch.ok(&["run", "tiny.toml", "--threads", "1"]);
    assert_eq!(
        warm.file_name(),
        train(&scratch).file_name(),
        "filed under the from-scratch key"
    );
    assert_eq!(outputs(&warm), outputs(&train(&scratch)));
}
