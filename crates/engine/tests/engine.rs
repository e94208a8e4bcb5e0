//! Integration tests of the engine's promises, driving the real `engine-testbed` binary on temp
//! dirs: one test per promise, in both directions where there are two. Synchronisation is by
//! file handshakes (markers, partial-dir checkpoints, log lines), never by sleeping.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::Project;

impl Project {
    /// Committed entries (a valid-looking manifest) in the project's cache.
    fn committed(&self) -> usize {
        fs::read_dir(self.dir.join("cache/entries"))
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter(|e| e.path().join("manifest.json").exists())
                    .count()
            })
            .unwrap_or(0)
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The highest step any slow stage has checkpointed into a partial dir.
fn partial_progress(dir: &Path) -> u32 {
    fs::read_dir(dir.join("cache/partial"))
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|e| fs::read_to_string(e.path().join("progress")).ok())
                .filter_map(|s| s.trim().parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

const CHAIN: &str = r#"
[experiment]
name = "chain"
seed = 1

[stage.a]
kind = "count"
counter = "counts/a"
label = "a"

[stage.b]
kind = "count"
counter = "counts/b"
label = "LABEL"
from = { after = "a" }

[stage.c]
kind = "count"
counter = "counts/c"
label = "c"
from = { after = "b" }
"#;

#[test]
fn changing_a_param_reruns_that_stage_and_downstream_and_nothing_upstream() {
    let p = Project::new();
    p.file("exp.toml", &CHAIN.replace("LABEL", "x"));
    p.ok(&["run", "exp.toml"]);
    assert_eq!((p.count("a"), p.count("b"), p.count("c")), (1, 1, 1));

    // Unchanged: nothing reruns.
    let r = p.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("0 ran, 3 fresh"), "{}", r.stdout);

    p.file("exp.toml", &CHAIN.replace("LABEL", "y"));
    let plan = p.ok(&["plan", "exp.toml"]);
    assert_eq!(
        plan.stdout,
        "a  fresh\nb  dirty  param `label` changed: \"x\" → \"y\"\nc  dirty  upstream `b` changed\n"
    );
    p.ok(&["run", "exp.toml"]);
    assert_eq!((p.count("a"), p.count("b"), p.count("c")), (1, 2, 2));
}

#[test]
fn set_override_changes_the_key_and_shows_in_plan_and_manifest() {
    let p = Project::new();
    p.file("exp.toml", &CHAIN.replace("LABEL", "x"));
    p.ok(&["run", "exp.toml"]);
    let plan = p.ok(&["plan", "exp.toml", "--set", "stage.b.label=z"]);
    assert!(
        plan.stdout.starts_with("with --set stage.b.label=z\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("b  dirty  param `label` changed: \"x\" → \"z\""),
        "{}",
        plan.stdout
    );
    p.ok(&["run", "exp.toml", "--set", "stage.b.label=z"]);
    let manifest = fs::read_to_string(p.dir.join("runs/chain/b/manifest.json")).unwrap();
    assert!(manifest.contains("\"stage.b.label=z\""), "{manifest}");
    assert_eq!(
        fs::read_to_string(p.dir.join("runs/chain/b/count.txt")).unwrap(),
        "z"
    );
    // A type error in an override is a usage error.
    let bad = p.run(&["run", "exp.toml", "--set", "stage.b.sleep_ms=soon"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("`sleep_ms` in stage `b` (kind `count`): invalid type"),
        "{}",
        bad.stderr
    );
}

#[test]
fn explicit_default_and_integer_float_keep_the_key() {
    let p = Project::new();
    p.file("exp.toml", "[stage.w]\nkind = \"write\"\n");
    p.ok(&["run", "exp.toml"]);
    p.file(
        "exp.toml",
        "[stage.w]\nkind = \"write\"\ntext = \"hello\"\nscale = 1\n",
    );
    let r = p.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("0 ran, 1 fresh"), "{}", r.stdout);
    // The other direction: a non-default value is a new key.
    p.file("exp.toml", "[stage.w]\nkind = \"write\"\nscale = 1.5\n");
    let r = p.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("1 ran, 0 fresh"), "{}", r.stdout);
}

#[test]
fn device_and_threads_do_not_change_keys() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[experiment]\ndevice = \"cpu\"\n[stage.w]\nkind = \"write\"\n",
    );
    p.ok(&["run", "exp.toml", "--threads", "1"]);
    let r = p.ok(&[
        "run",
        "exp.toml",
        "--device",
        "cuda:1",
        "--threads",
        "7",
        "-j",
        "1",
    ]);
    assert!(r.stdout.contains("0 ran, 1 fresh"), "{}", r.stdout);
    p.file(
        "exp.toml",
        "[experiment]\ndevice = \"cuda\"\n[stage.w]\nkind = \"write\"\n",
    );
    let r = p.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("0 ran, 1 fresh"), "{}", r.stdout);
    // Recorded, though: the manifest says which device computed the entry.
    let manifest = fs::read_to_string(p.dir.join("runs/exp/w/manifest.json")).unwrap();
    assert!(manifest.contains("\"device\": \"cpu\""), "{manifest}");
}

#[test]
fn moving_the_project_directory_keeps_the_cache() {
    let p = Project::new();
    p.file("data/x.txt", "x").file(
        "exp.toml",
        "[experiment]\ncache = \"cache\"\n[input.data]\npath = \"data\"\n[stage.c]\nkind = \"count\"\ncounter = \"counts/c\"\nfrom = { after = \"data\" }\n",
    );
    p.ok(&["run", "exp.toml"]);
    let moved = p.dir.with_file_name("moved");
    fs::rename(&p.dir, &moved).unwrap();
    let q = Project {
        _tmp: tempfile::tempdir().unwrap(),
        dir: moved,
    };
    let plan = q.ok(&["plan", "exp.toml"]);
    assert_eq!(plan.stdout, "c  fresh\n");
    let r = q.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("0 ran, 1 fresh"), "{}", r.stdout);
    assert_eq!(q.count("c"), 1);
    assert!(
        q.dir.join("runs/exp/c/count.txt").exists(),
        "the runs/ link still resolves"
    );
}

fn touch_mtime(path: &Path) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890))
        .unwrap();
}

fn input_project(mode: &str) -> Project {
    let p = Project::new();
    p.file("data/a/1.txt", "1").file("data/a/2.txt", "2").file(
        "exp.toml",
        &format!(
            "[input.data]\npath = \"data\"\nfingerprint = \"{mode}\"\n[stage.c]\nkind = \"count\"\ncounter = \"counts/c\"\nfrom = {{ after = \"data\" }}\n"
        ),
    );
    p.ok(&["run", "exp.toml"]);
    p
}

#[test]
fn touching_mtime_reruns_in_stat_mode_only() {
    let p = input_project("stat");
    touch_mtime(&p.dir.join("data/a/2.txt"));
    let plan = p.ok(&["plan", "exp.toml"]);
    assert_eq!(
        plan.stdout,
        "c  dirty  input `data` changed: 1 file modified (e.g. `a/2.txt`)\n"
    );
    p.ok(&["run", "exp.toml"]);
    assert_eq!(p.count("c"), 2);

    let p = input_project("content");
    touch_mtime(&p.dir.join("data/a/2.txt"));
    p.ok(&["run", "exp.toml"]);
    assert_eq!(p.count("c"), 1, "content mode ignores mtime");
    // ...but not content.
    p.file("data/a/2.txt", "changed").file("data/b.txt", "new");
    let plan = p.ok(&["plan", "exp.toml"]);
    assert_eq!(
        plan.stdout,
        "c  dirty  input `data` changed: 1 file added, 1 file modified (e.g. `a/2.txt`)\n"
    );
}

#[test]
fn kill_9_during_a_slow_stage_leaves_no_complete_entry_and_the_rerun_resumes() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[stage.s]\nkind = \"slow\"\nsteps = 400\nstep_ms = 5\n",
    );
    let mut child = p.spawn(&["run", "exp.toml"], "run.log");
    wait_until("a checkpoint", || partial_progress(&p.dir) >= 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(p.committed(), 0, "nothing looks complete after kill -9");
    let resumed_at = partial_progress(&p.dir);
    assert!(resumed_at >= 3);

    p.ok(&["run", "exp.toml"]);
    assert_eq!(p.committed(), 1);
    let done = fs::read_to_string(p.dir.join("runs/exp/s/done.txt")).unwrap();
    let from: u32 = done
        .trim()
        .trim_start_matches("resumed_from=")
        .parse()
        .unwrap();
    assert!(
        from >= resumed_at,
        "resumed from step {from}, checkpoint was {resumed_at}"
    );
    assert_eq!(
        partial_progress(&p.dir),
        0,
        "partial dir removed after commit"
    );
}

#[test]
fn two_concurrent_runs_compute_the_stage_once_and_the_second_says_it_waits() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[stage.c]\nkind = \"count\"\ncounter = \"counts/c\"\nstarted_marker = \"started\"\nrelease = \"release\"\n",
    );
    let mut first = p.spawn(&["run", "exp.toml"], "first.log");
    wait_until("the first run to start the stage", || {
        p.dir.join("started").exists()
    });
    let mut second = p.spawn(&["run", "exp.toml"], "second.log");
    let second_log = || fs::read_to_string(p.dir.join("second.log")).unwrap_or_default();
    wait_until("the second run to say it waits", || {
        second_log().contains("waiting for another vaepipe run holding `c` (key ")
    });
    fs::write(p.dir.join("release"), "").unwrap();
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success(), "{}", second_log());
    assert_eq!(p.count("c"), 1, "computed once");
    assert!(
        second_log().contains("stage `c` fresh (hit"),
        "{}",
        second_log()
    );
    assert_eq!(p.committed(), 1);
}

#[test]
fn accelerator_stages_never_overlap() {
    let p = Project::new();
    let stage = |n: &str| {
        format!("[stage.{n}]\nkind = \"count\"\ncounter = \"counts/{n}\"\naccelerator = true\nbusy_marker = \"busy\"\nsleep_ms = 50\n")
    };
    p.file(
        "exp.toml",
        &format!("{}{}{}", stage("x"), stage("y"), stage("z")),
    );
    p.ok(&["run", "exp.toml", "--jobs", "3"]);
    assert_eq!((p.count("x"), p.count("y"), p.count("z")), (1, 1, 1));
}

#[test]
fn a_failing_stage_exits_1_keeps_upstream_and_skips_downstream() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[stage.a]\nkind = \"write\"\n[stage.f]\nkind = \"fail\"\nmessage = \"boom\"\nfrom = { after = \"a\" }\n[stage.d]\nkind = \"count\"\ncounter = \"counts/d\"\nfrom = { after = \"f\" }\n",
    );
    let r = p.run(&["run", "exp.toml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("stage `f` failed: boom"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("stage `d` skipped: upstream `f` did not complete"),
        "{}",
        r.stderr
    );
    assert_eq!(
        p.committed(),
        1,
        "upstream `a` stays committed, `f` left nothing"
    );
    assert_eq!(p.count("d"), 0);
    assert_eq!(
        fs::read_dir(p.dir.join("cache/tmp")).unwrap().count(),
        0,
        "temp dir removed"
    );
}

#[test]
fn a_panicking_stage_is_reported_not_propagated() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[stage.f]\nkind = \"fail\"\nmessage = \"kaboom\"\npanic = true\n",
    );
    let r = p.run(&["run", "exp.toml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("stage `f` failed: panicked: kaboom"),
        "{}",
        r.stderr
    );
    // See: issue 15. The hook says what failed and where the work is; no raw Rust banner.
    assert!(!r.stderr.contains("panicked at"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: internal error in vaepipe (a bug): kaboom\n  where: crates/engine/src/bin/engine-testbed.rs:"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("<cache>/partial/"), "{}", r.stderr);
}

#[test]
fn exit_codes() {
    let p = Project::new();
    p.file("good.toml", "[stage.w]\nkind = \"write\"\n");
    p.file("bad.toml", "[stage.w]\nkind = \"write\"\ntxet = 1\n");
    assert_eq!(p.run(&["run", "good.toml"]).code, 0);
    let bad = p.run(&["run", "bad.toml"]);
    assert_eq!(bad.code, 2);
    assert_eq!(
        bad.stderr,
        "error: unknown param `txet` in stage `w` (kind `write`)\n --> bad.toml:3:1\n  |\n3 | txet = 1\n  | ^^^^\n  = help: did you mean `text`?\n"
    );
    assert_eq!(p.run(&["run", "missing.toml"]).code, 2);
    let only = p.run(&["run", "good.toml", "--only", "ww"]);
    assert_eq!(only.code, 2);
    assert!(
        only.stderr.contains("unknown stage `ww` in `--only`"),
        "{}",
        only.stderr
    );
    assert!(only.stderr.contains("did you mean `w`?"), "{}", only.stderr);
    // 130: interrupted (SIGINT) during a slow stage; its checkpoint stays for a resume.
    p.file(
        "slow.toml",
        "[stage.s]\nkind = \"slow\"\nsteps = 1000\nstep_ms = 5\n",
    );
    let mut child = p.spawn(&["run", "slow.toml"], "slow.log");
    wait_until("a checkpoint", || partial_progress(&p.dir) >= 2);
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(partial_progress(&p.dir) >= 2);
}

#[test]
fn config_errors_land_on_their_line_and_column_all_in_one_pass() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[experiment]\nseed = \"x\"\n\n[stage.a]\nkind = \"wrte\"\n\n[stage.b]\nkind = \"write\"\nfrom = { src = \"c\" }\n",
    );
    let r = p.run(&["plan", "exp.toml"]);
    assert_eq!(r.code, 2);
    let locations: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("-->"))
        .map(str::trim)
        .collect();
    assert_eq!(
        locations,
        ["--> exp.toml:2:8", "--> exp.toml:5:8", "--> exp.toml:9:16"],
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .ends_with("error: could not load `exp.toml` due to 3 previous errors\n"));
}

#[test]
fn only_runs_the_stage_and_its_upstream() {
    let p = Project::new();
    p.file("exp.toml", &CHAIN.replace("LABEL", "x"));
    p.ok(&["run", "exp.toml", "--only", "b"]);
    assert_eq!((p.count("a"), p.count("b"), p.count("c")), (1, 1, 0));
    p.ok(&["run", "exp.toml", "--force", "a"]);
    assert_eq!((p.count("a"), p.count("b"), p.count("c")), (2, 1, 1));
}

#[test]
fn plan_verbose_prints_the_preimage_and_dag_prints_dot() {
    let p = Project::new();
    p.file("exp.toml", &CHAIN.replace("LABEL", "x"));
    let r = p.ok(&["plan", "exp.toml", "-v"]);
    assert!(
        r.stdout
            .contains("preimage  {\"format\":1,\"inputs\":{},\"kind\":\"count\""),
        "{}",
        r.stdout
    );
    let dag = p.ok(&["dag", "exp.toml"]);
    assert!(
        dag.stdout.starts_with("digraph \"chain\" {"),
        "{}",
        dag.stdout
    );
    assert!(
        dag.stdout.contains("\"a\" -> \"b\" [label=\"after\"];"),
        "{}",
        dag.stdout
    );
}

#[test]
fn metrics_show_in_the_run_summary() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[stage.w]\nkind = \"write\"\nmetrics = true\nscale = 0.25\n",
    );
    let r = p.ok(&["run", "exp.toml"]);
    assert!(
        r.stdout.contains("w: runs/exp/w  len=5 scale=0.25"),
        "{}",
        r.stdout
    );
}

#[test]
fn gc_deletes_only_unlinked_entries_and_refuses_a_non_cache() {
    let p = Project::new();
    p.file("exp.toml", "[stage.w]\nkind = \"write\"\ntext = \"one\"\n");
    p.ok(&["run", "exp.toml"]);
    p.file("exp.toml", "[stage.w]\nkind = \"write\"\ntext = \"two\"\n");
    p.ok(&["run", "exp.toml"]);
    assert_eq!(p.committed(), 2);
    // Just made, so within the default grace age: nothing goes yet.
    let young = p.ok(&["gc"]);
    assert!(
        young
            .stdout
            .contains("kept 1 unlinked entry younger than 1day"),
        "{}",
        young.stdout
    );
    assert_eq!(p.committed(), 2);
    let dry = p.ok(&["gc", "--dry-run", "--older-than", "0s"]);
    assert!(
        dry.stdout.contains("would delete 1 item(s)"),
        "{}",
        dry.stdout
    );
    assert_eq!(p.committed(), 2, "a dry run deletes nothing");
    let gc = p.ok(&["gc", "--older-than", "0s"]);
    assert!(
        gc.stdout.contains("deleted 1 item(s)") && gc.stdout.contains(" freed"),
        "{}",
        gc.stdout
    );
    assert_eq!(p.committed(), 1);
    assert_eq!(
        fs::read_to_string(p.dir.join("runs/exp/w/out.txt")).unwrap(),
        "two"
    );

    fs::create_dir_all(p.dir.join("precious")).unwrap();
    let r = p.run(&["gc", "--cache-dir", "precious"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("is not a vaepipe cache (it has no CACHEDIR.TAG)"),
        "{}",
        r.stderr
    );
}

#[test]
fn cache_verify_before_the_first_commit_is_a_clean_empty_result() {
    // A run killed before it created `cache/`, or while it was creating it, leaves nothing to
    // damage: verify must say so and exit 0 (a kill-at-random test verifies after each kill).
    let p = Project::new();
    let r = p.ok(&["cache", "verify"]);
    assert!(
        r.stdout.contains("yet: checked 0 entries, 0 damaged"),
        "{}",
        r.stdout
    );
    fs::create_dir_all(p.dir.join("cache")).unwrap();
    let r = p.ok(&["cache", "verify"]);
    assert!(
        r.stdout.contains("checked 0 entries, 0 damaged"),
        "{}",
        r.stdout
    );
    // A directory with other files is still not taken for a cache.
    fs::write(p.dir.join("cache/notes.txt"), "mine").unwrap();
    let r = p.run(&["cache", "verify"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn cache_verify_names_tampered_and_truncated_entries() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[stage.w]\nkind = \"write\"\ntext = \"hello world\"\n[stage.v]\nkind = \"write\"\n",
    );
    p.ok(&["run", "exp.toml"]);
    assert!(p
        .ok(&["cache", "verify"])
        .stdout
        .contains("checked 2 entries, 0 damaged"));
    let w = fs::canonicalize(p.dir.join("runs/exp/w")).unwrap();
    // Entries are read-only: a user who edits one has to force it first.
    let mut perms = fs::metadata(w.join("out.txt")).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)] // that is the point: a forced edit
    perms.set_readonly(false);
    fs::set_permissions(w.join("out.txt"), perms).unwrap();
    fs::write(w.join("out.txt"), "hello").unwrap();
    let r = p.run(&["cache", "verify"]);
    assert_eq!(r.code, 1);
    let key = w.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        r.stdout
            .contains(&format!("damaged entry {key} (stage `w`):")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("`out.txt` was truncated or grew: 11 → 5 bytes"),
        "{}",
        r.stdout
    );
}

const SWEEP: &str = r#"
[experiment]
name = "sw"

[stage.data]
kind = "count"
counter = "counts/data"
label = "d"

[stage.train]
kind = "count"
counter = "counts/train"
label = "t"
score = 1.0
from = { after = "data" }

[stage.render]
kind = "count"
counter = "counts/render"
label = "r"
from = { after = "train" }

[sweep]
"stage.train.score" = [0.5, 1.0]
"stage.render.label" = LABELS
"#;

/// See: issue 7. One DAG for the whole sweep: shared stages run once, and a new value runs only
/// the new variants.
#[test]
fn a_2x2_sweep_runs_shared_stages_once_writes_the_table_and_adding_a_value_runs_only_new_variants()
{
    let p = Project::new();
    p.file("exp.toml", &SWEEP.replace("LABELS", "[\"x\", \"y\"]"));
    let plan = p.ok(&["plan", "exp.toml"]);
    assert!(
        plan.stdout
            .starts_with("sweep: 4 variants (grid over score × label); 7 distinct stages of 12\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("\ndata                      dirty  never run  [4 variants]\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("\nscore-0.5/train           dirty  never run  [2 variants]\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("\nscore-1_label-y/render    dirty  never run\n"),
        "{}",
        plan.stdout
    );
    let r = p.ok(&["run", "exp.toml"]);
    assert!(
        r.stdout.contains("7 ran, 0 fresh, 0 not completed"),
        "{}",
        r.stdout
    );
    assert_eq!(
        (p.count("data"), p.count("train"), p.count("render")),
        (1, 2, 4),
        "shared upstream work runs once"
    );
    // Links: per variant for every stage, plus the shared ones beside them.
    for v in [
        "score-0.5_label-x",
        "score-0.5_label-y",
        "score-1_label-x",
        "score-1_label-y",
    ] {
        for s in ["data", "train", "render"] {
            assert!(
                p.dir.join(format!("runs/sw/{v}/{s}/count.txt")).exists(),
                "{v}/{s}"
            );
        }
        assert!(p.dir.join(format!("runs/sw/{v}/report.html")).exists());
    }
    assert!(p.dir.join("runs/sw/data/count.txt").exists());
    assert!(
        !p.dir.join("runs/sw/train").exists(),
        "train is not shared by all variants"
    );

    let csv = fs::read_to_string(p.dir.join("runs/sw/sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "variant,score,label,train.final_total_loss,train.share_rising,wall_time_s,cache"
    );
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[1].starts_with("score-0.5_label-x,0.5,x,0.5,0.05,"),
        "{csv}"
    );
    assert!(
        lines[4].starts_with("score-1_label-y,1,y,1,0.1,") && lines[4].ends_with(",miss"),
        "{csv}"
    );
    let md = fs::read_to_string(p.dir.join("runs/sw/sweep.md")).unwrap();
    assert!(md.contains("| variant | score | label |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(p.dir.join("runs/sw/sweep.json")).unwrap())
            .unwrap();
    let v0 = &json["variants"][0];
    assert_eq!(v0["name"], "score-0.5_label-x");
    assert_eq!(v0["values"]["stage.train.score"], 0.5);
    let train_dir = v0["stages"][1]["dir"].as_str().unwrap();
    assert!(
        Path::new(train_dir).join("count.txt").exists(),
        "{train_dir}"
    );
    let html = fs::read_to_string(p.dir.join("runs/sw/report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("score-0.5_label-x"),
        "report.html"
    );
    assert_eq!(
        html.matches("http").count(),
        1,
        "no external assets, only the SVG namespace"
    );

    // Unchanged: nothing runs, and every variant is a hit.
    let r = p.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("0 ran, 7 fresh"), "{}", r.stdout);
    let csv = fs::read_to_string(p.dir.join("runs/sw/sweep.csv")).unwrap();
    assert!(csv.lines().skip(1).all(|l| l.ends_with(",hit")), "{csv}");

    // A third label: only the two new variants' render stages run.
    p.file(
        "exp.toml",
        &SWEEP.replace("LABELS", "[\"x\", \"y\", \"z\"]"),
    );
    let r = p.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("2 ran, 7 fresh"), "{}", r.stdout);
    assert_eq!(
        (p.count("data"), p.count("train"), p.count("render")),
        (1, 2, 6)
    );
    // The command line adds axes too, and type-checks every value.
    let r = p.ok(&[
        "plan",
        "exp.toml",
        "--sweep",
        "stage.data.label=d,e",
        "--sweep-mode",
        "grid",
    ]);
    assert!(r.stdout.starts_with("sweep: 12 variants (grid over score × render.label × data.label); 18 distinct stages of 36"), "{}", r.stdout);
    let bad = p.run(&["plan", "exp.toml", "--sweep", "stage.train.score=1,high"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains(
            "error: `score` in stage `train` (kind `count`): invalid type: string \"high\""
        ),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("--sweep stage.train.score=1,high"),
        "{}",
        bad.stderr
    );
}

const LOCKED: &str = r#"
[input.data]
path = "data"

[stage.w]
kind = "write"
text = "x"
from = { src = "data" }

[stage.plot]
kind = "write"
text = "PNGDATA"
file = "add_plot.png"
metrics = true
"#;

/// See: issue 7. Lock, verify an untouched run, then tamper with an input: `--locked` refuses
/// and names it.
#[test]
fn lock_verify_passes_untouched_and_locked_refuses_a_tampered_input_naming_it() {
    let p = Project::new();
    p.file("data/out.txt", "abc").file("exp.toml", LOCKED);
    let r = p.run(&["lock", "exp.toml"]);
    assert_eq!(r.code, 1, "nothing to lock before a run: {}", r.stderr);
    assert!(r.stderr.contains("no cache entry to lock"), "{}", r.stderr);
    p.ok(&["run", "exp.toml"]);
    let html = fs::read_to_string(p.dir.join("runs/exp/report.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,UE5HREFUQQ=="),
        "the stage's PNG is embedded byte for byte"
    );
    let r = p.ok(&["lock", "exp.toml"]);
    assert!(
        r.stdout
            .contains("wrote exp.toml.lock: 1 input, 2 stages, 3 output files"),
        "{}",
        r.stdout
    );
    let lock = fs::read_to_string(p.dir.join("exp.toml.lock")).unwrap();
    assert!(
        lock.contains("[inputs.data]") && lock.contains("[stages.w.outputs]"),
        "{lock}"
    );

    let v = p.ok(&["verify", "exp.toml"]);
    assert!(
        v.stdout.contains("w     bitwise equal (1 file"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .contains("verified 2 stages: 2 bitwise equal, 0 different"),
        "{}",
        v.stdout
    );
    let v = p.ok(&["verify", "exp.toml", "--stage", "plot"]);
    assert!(
        v.stdout.contains("verified 1 stage: 1 bitwise equal"),
        "{}",
        v.stdout
    );
    assert_eq!(
        fs::read_dir(&p.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with(".vaepipe-verify"))
            .count(),
        0,
        "the scratch cache is removed"
    );
    p.ok(&["run", "exp.toml", "--locked"]);

    // A changed param is named.
    let r = p.run(&["run", "exp.toml", "--locked", "--set", "stage.w.text=y"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("stage `w`: param `text` changed: \"x\" → \"y\""),
        "{}",
        r.stderr
    );

    // A tampered input is named, with what changed in it.
    p.file("data/out.txt", "abd");
    let r = p.run(&["run", "exp.toml", "--locked"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("input `data` changed: 1 file modified (e.g. `out.txt`)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("refusing to run"), "{}", r.stderr);
    assert_eq!(p.committed(), 2, "nothing ran");
}

fn send(signal: &str, child: &std::process::Child) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Whether any committed entry exists (a manifest under `cache/entries`).
fn any_manifest(dir: &Path) -> bool {
    let mut stack = vec![dir.join("cache/entries")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == "manifest.json" {
                return true;
            }
        }
    }
    false
}

/// See: issue 15. SIGTERM (what `timeout`, Slurm and Kubernetes send) stops a long stage at
/// once with 143, leaves no manifest, and the rerun resumes from the checkpoint.
#[test]
fn sigterm_stops_a_long_stage_with_143_and_the_rerun_resumes() {
    let p = Project::new();
    p.file(
        "slow.toml",
        "[stage.s]\nkind = \"slow\"\nsteps = 1000\nstep_ms = 5\n",
    );
    let mut child = p.spawn(&["run", "slow.toml"], "slow.log");
    wait_until("a checkpoint", || partial_progress(&p.dir) >= 2);
    let sent_at = Instant::now();
    send("-TERM", &child);
    let status = child.wait().unwrap();
    let took = sent_at.elapsed();
    let log = fs::read_to_string(p.dir.join("slow.log")).unwrap();
    assert_eq!(status.code(), Some(143), "{log}");
    // A correctness bound, not a benchmark: the stage checks the flag every 5 ms step.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(log.contains("interrupted"), "{log}");
    assert!(
        !any_manifest(&p.dir),
        "an interrupted stage leaves no entry"
    );
    let stopped_at = partial_progress(&p.dir);
    assert!((2..1000).contains(&stopped_at), "{stopped_at}");
    p.ok(&["run", "slow.toml"]);
    let done = fs::read_to_string(p.dir.join("runs/slow/s/done.txt")).unwrap();
    let resumed: u32 = done
        .trim()
        .trim_start_matches("resumed_from=")
        .parse()
        .unwrap();
    assert!(resumed >= stopped_at, "{done}");
}

/// See: issue 15. A stage that finishes despite a signal still makes the verb say it was
/// interrupted (it exited 0 "as if nothing had been asked"); what finished stays committed.
#[test]
fn a_signal_during_a_stage_that_finishes_still_exits_interrupted() {
    let p = Project::new();
    let marker = p.dir.join("started");
    p.file(
        "exp.toml",
        &format!(
            "[stage.c]\nkind = \"count\"\ncounter = \"counts/c\"\nlabel = \"c\"\nsleep_ms = 400\nstarted_marker = \"{}\"\n",
            marker.display()
        ),
    );
    let mut child = p.spawn(&["run", "exp.toml", "--jobs", "1"], "run.log");
    wait_until("the stage to start", || marker.exists());
    send("-INT", &child);
    let status = child.wait().unwrap();
    let log = fs::read_to_string(p.dir.join("run.log")).unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert_eq!(p.count("c"), 1);
    let rerun = p.ok(&["run", "exp.toml"]);
    assert!(rerun.stdout.contains("0 ran, 1 fresh"), "{}", rerun.stdout);
    assert_eq!(p.count("c"), 1, "the finished stage stayed committed");
}
