//! Warm starts (issue 19), on the testbed's `extend` kind (a resumable hash chain whose `steps`
//! is an extendable budget): a longer run continues the family's largest shorter entry and
//! equals a run from scratch; nothing else is ever continued (another param, a larger budget,
//! a kind that declares no budget, `warm_start = false`, `--force`, a damaged entry); a kill
//! during a warm-started run leaves no entry and the rerun resumes; `verify` recomputes a
//! warm-started entry from scratch.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;

use support::Project;

fn exp(steps: u64, extra: &str) -> String {
    format!("[stage.c]\nkind = \"extend\"\nsteps = {steps}\ncounter = \"steps.log\"\n{extra}")
}

/// Chain steps computed so far in this project (all runs).
fn computed(p: &Project) -> usize {
    fs::read_to_string(p.dir.join("steps.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn entry(p: &Project) -> PathBuf {
    fs::canonicalize(p.dir.join("runs/exp/c")).unwrap()
}

fn key(p: &Project) -> String {
    entry(p).file_name().unwrap().to_string_lossy().into_owned()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn value(p: &Project) -> String {
    fs::read_to_string(entry(p).join("value.txt")).unwrap()
}

/// Runs `exp.toml` and returns how many chain steps that run computed.
fn run(p: &Project, text: &str, args: &[&str]) -> (usize, support::Run) {
    p.file("exp.toml", text);
    let before = computed(p);
    let mut all = vec!["run", "exp.toml"];
    all.extend(args);
    let r = p.ok(&all);
    (computed(p) - before, r)
}

/// The value a fresh cache computes for `text`, and its key.
fn from_scratch(text: &str) -> (String, String) {
    let q = Project::new();
    let (steps, _) = run(&q, text, &[]);
    assert!(steps > 0);
    (value(&q), key(&q))
}

#[test]
fn an_extended_run_continues_the_shorter_entry_and_equals_a_run_from_scratch() {
    let p = Project::new();
    assert_eq!(run(&p, &exp(4, ""), &[]).0, 4);
    let short = key(&p);

    p.file("exp.toml", &exp(12, ""));
    let plan = p.ok(&["plan", "exp.toml"]);
    assert!(
        plan.stdout
            .contains(&format!("warm start from {} (steps 4)", &short[..12])),
        "{}",
        plan.stdout
    );
    let (steps, r) = run(&p, &exp(12, ""), &[]);
    assert_eq!(steps, 8, "only the 8 missing steps run");
    assert!(
        r.stderr
            .contains(&format!("stage `c`: warm start from {}", &short[..12])),
        "{}",
        r.stderr
    );
    let m = manifest(&entry(&p));
    assert_eq!(m["warm_start_from"]["key"], short.as_str());
    assert_eq!(m["warm_start_from"]["budget"], 4);
    assert_eq!(m["warm_start_from"]["budget_param"], "steps");
    assert_eq!(m["notes"]["resumed_from"], 4);

    let (scratch_value, scratch_key) = from_scratch(&exp(12, ""));
    assert_eq!(
        key(&p),
        scratch_key,
        "the result is filed under the from-scratch key"
    );
    assert_eq!(value(&p), scratch_value, "and has its bits");

    // `verify` recomputes the warm-started entry from scratch (all 12 steps) and compares.
    p.ok(&["lock", "exp.toml"]);
    let before = computed(&p);
    let v = p.ok(&["verify", "exp.toml"]);
    assert!(
        v.stdout.contains("verified 1 stage: 1 bitwise equal"),
        "{}",
        v.stdout
    );
    assert_eq!(computed(&p) - before, 12, "verify ran from step 0");
}

#[test]
fn only_a_lower_budget_of_the_same_family_of_an_extendable_kind_is_continued() {
    let p = Project::new();
    run(&p, &exp(4, "salt = 1"), &[]);
    let (steps, r) = run(&p, &exp(12, "salt = 2"), &[]);
    assert_eq!(steps, 12, "another salt is another family: {}", r.stderr);
    assert!(manifest(&entry(&p)).get("warm_start_from").is_none());

    // Only a larger budget in the family: a shorter run starts from zero.
    let (steps, _) = run(&p, &exp(8, "salt = 2"), &[]);
    assert_eq!(steps, 8, "12 steps are never continued down to 8");
    assert!(manifest(&entry(&p)).get("warm_start_from").is_none());
    // And with both 4 and 12 of salt 1 … 3 is below both: from zero; 20 continues 12.
    run(&p, &exp(12, "salt = 1"), &[]);
    assert_eq!(run(&p, &exp(3, "salt = 1"), &[]).0, 3);
    let (steps, _) = run(&p, &exp(20, "salt = 1"), &[]);
    assert_eq!(steps, 8, "the largest lower budget (12) is continued");
    assert_eq!(manifest(&entry(&p))["warm_start_from"]["budget"], 12);

    // A kind whose params declare no extendable budget is never continued.
    run(&p, &exp(4, "extendable = false"), &[]);
    let (steps, _) = run(&p, &exp(12, "extendable = false"), &[]);
    assert_eq!(steps, 12);
    let m = manifest(&entry(&p));
    assert!(m.get("warm_start_from").is_none() && m.get("family").is_none());
}

#[test]
fn warm_start_false_and_force_run_from_scratch() {
    let p = Project::new();
    run(&p, &exp(4, ""), &[]);
    let off = format!("[experiment]\nwarm_start = false\n{}", exp(12, ""));
    p.file("exp.toml", &off);
    let plan = p.ok(&["plan", "exp.toml"]);
    assert!(!plan.stdout.contains("warm start"), "{}", plan.stdout);
    assert_eq!(run(&p, &off, &[]).0, 12);
    assert!(manifest(&entry(&p)).get("warm_start_from").is_none());

    let q = Project::new();
    run(&q, &exp(4, ""), &[]);
    let (steps, _) = run(&q, &exp(12, ""), &["--force", "c"]);
    assert_eq!(steps, 12, "--force recomputes from zero");
    assert!(manifest(&entry(&q)).get("warm_start_from").is_none());
}

/// Owner write permission, the way a user would force an edit of a read-only entry.
fn writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).unwrap().permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o200)).unwrap();
}

#[test]
fn a_damaged_source_is_never_continued() {
    let p = Project::new();
    run(&p, &exp(4, ""), &[]);
    // Same size, same mtime, other bytes: only a re-hash can tell.
    let state = entry(&p).join("state");
    let mtime = fs::metadata(&state).unwrap().modified().unwrap();
    let text = fs::read_to_string(&state).unwrap();
    let forged = format!("4 {}", "7".repeat(text.len() - 2));
    assert_eq!(forged.len(), text.len());
    writable(&state);
    fs::write(&state, &forged).unwrap();
    fs::File::options()
        .write(true)
        .open(&state)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (steps, r) = run(&p, &exp(12, ""), &[]);
    assert_eq!(steps, 12, "{}", r.stderr);
    assert!(
        r.stderr.contains("is damaged") && r.stderr.contains("not used for a warm start"),
        "{}",
        r.stderr
    );
    assert!(manifest(&entry(&p)).get("warm_start_from").is_none());
    assert_eq!(value(&p), from_scratch(&exp(12, "")).0);
}

#[test]
fn a_kill_during_a_warm_started_run_leaves_no_entry_and_the_rerun_resumes() {
    let p = Project::new();
    run(&p, &exp(4, "step_ms = 20"), &[]);
    let short = key(&p);
    let long = exp(200, "step_ms = 20");
    p.file("exp.toml", &long);
    let mut child = p.spawn(&["run", "exp.toml"], "killed.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while computed(&p) < 4 + 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = computed(&p) - 4;
    assert!(
        (10..196).contains(&done),
        "killed mid-run after {done} steps"
    );
    assert_eq!(key(&p), short, "the link still shows the short entry");
    let entries = fs::read_dir(p.dir.join("cache/entries")).unwrap().count();
    assert_eq!(entries, 1, "a killed run leaves no entry");

    let (steps, r) = run(&p, &long, &["-v"]);
    assert!(
        steps < 200 - 4 - 9 && steps + done >= 196,
        "resumed the killed run's checkpoint ({steps} steps after {done}): {}",
        r.stderr
    );
    assert!(r.stderr.contains("resuming from step"), "{}", r.stderr);
    let m = manifest(&entry(&p));
    assert_eq!(
        m["warm_start_from"]["key"],
        short.as_str(),
        "still recorded"
    );
    assert_eq!(value(&p), from_scratch(&exp(200, "")).0);
    assert!(
        !p.dir
            .join("cache/partial")
            .join(format!("{}.warm.json", key(&p)))
            .exists(),
        "the marker goes with the commit"
    );
}
