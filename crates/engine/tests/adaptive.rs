//! Adaptive sweeps (`strategy = "random" | "tpe" | "halving"`) through the real binary, on the
//! testbed's `quadratic` kind (`score = 1 - (x - 0.3)² + bonus(level) - 0.5 / steps`, instant):
//! determinism whatever the finish order, resuming after a kill, raising `trials`, halving's
//! promotions and stop reasons, `plan` before anything runs, lock replay, and config errors.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure

mod support;

use std::collections::BTreeMap;
use std::fs;

use support::Project;

/// A quadratic stage and an adaptive `[sweep]` whose strategy lines are `sweep`.
fn experiment(stage_extra: &str, sweep: &str) -> String {
    format!(
        "[stage.q]\nkind = \"quadratic\"\ncounter = \"counts/q\"\n{stage_extra}\n[sweep]\nseed = 7\nobjective = \"q.score\"\n{sweep}\n"
    )
}

const SPACE: &str = "space.\"stage.q.x\" = { uniform = [-1.0, 2.0] }\nspace.\"stage.q.level\" = { choice = [\"plain\", \"good\", \"best\"] }\n";

/// `sweep.csv` as rows of column → cell.
fn table(p: &Project) -> Vec<BTreeMap<String, String>> {
    let text = fs::read_to_string(p.dir.join("runs/exp/sweep.csv")).unwrap();
    let mut lines = text.lines();
    let split = |l: &str| -> Vec<String> {
        // Cells with commas are quoted; origins and stop reasons are.
        let mut cells = Vec::new();
        let (mut cur, mut quoted) = (String::new(), false);
        for c in l.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => cells.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        cells.push(cur);
        cells
    };
    let header = split(lines.next().unwrap());
    lines
        .map(|l| header.iter().cloned().zip(split(l)).collect())
        .collect()
}

/// Each trial as `name x level origin` (what a proposal is), in table order.
fn trials(p: &Project) -> Vec<String> {
    table(p)
        .iter()
        .map(|r| format!("{} {} {} {}", r["variant"], r["x"], r["level"], r["origin"]))
        .collect()
}

fn score(row: &BTreeMap<String, String>) -> f64 {
    row["q.score"].parse().unwrap()
}

#[test]
fn tpe_trials_do_not_depend_on_finish_order_and_a_killed_sweep_resumes_to_the_same_list() {
    let tpe = "strategy = \"tpe\"\ntrials = 16\nparallel = 4\n";
    // In order, one at a time.
    let a = Project::new();
    a.file("exp.toml", &experiment("", &format!("{tpe}{SPACE}")));
    a.ok(&["run", "exp.toml", "-j", "1"]);
    let reference = trials(&a);
    assert_eq!(reference.len(), 16);
    assert!(
        reference[12].contains("tpe generation 3, from trials 0–11"),
        "{reference:?}"
    );
    assert_eq!(a.count("q"), 16);

    // Four at a time, each sleeping in proportion to its x: they finish in another order.
    let b = Project::new();
    b.file(
        "exp.toml",
        &experiment("sleep_ms_per_x = 40.0\n", &format!("{tpe}{SPACE}")),
    );
    b.ok(&["run", "exp.toml", "-j", "4"]);
    assert_eq!(trials(&b), reference);

    // Killed during generation 2, then run again: the same trials, the first two generations
    // from the cache.
    let c = Project::new();
    c.file(
        "exp.toml",
        &experiment("sleep_ms_per_x = 150.0\n", &format!("{tpe}{SPACE}")),
    );
    let mut child = c.spawn(&["run", "exp.toml", "-j", "1"], "run.log");
    let started = std::time::Instant::now();
    while c.count("q") < 9 {
        assert!(
            started.elapsed().as_secs() < 60,
            "generation 2 never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!c.dir.join("runs/exp/sweep.csv").exists());
    let before = c.count("q");
    c.ok(&["run", "exp.toml", "-j", "1"]);
    assert_eq!(trials(&c), reference);
    // Only what was not finished ran again: 16 executions plus the one the kill cut short.
    assert!(
        before <= 10 && c.count("q") <= 17,
        "{before} then {}",
        c.count("q")
    );
    let again = c.ok(&["run", "exp.toml"]);
    assert!(
        again.stdout.contains("exp: 0 ran, 16 fresh"),
        "{}",
        again.stdout
    );
}

#[test]
fn random_values_do_not_depend_on_the_trial_count_and_raising_trials_keeps_earlier_trials() {
    let p = Project::new();
    p.file(
        "exp.toml",
        &experiment("", &format!("strategy = \"random\"\ntrials = 4\n{SPACE}")),
    );
    p.ok(&["run", "exp.toml"]);
    let four = trials(&p);
    assert_eq!(p.count("q"), 4);
    assert_eq!(four[2].split(' ').nth(3), Some("random"));
    p.file(
        "exp.toml",
        &experiment("", &format!("strategy = \"random\"\ntrials = 7\n{SPACE}")),
    );
    let r = p.ok(&["run", "exp.toml"]);
    let seven = trials(&p);
    assert_eq!(seven.len(), 7);
    assert_eq!(seven[..4], four[..]);
    assert_eq!(p.count("q"), 7, "only the three new trials ran");
    assert!(r.stdout.contains("3 ran, 4 fresh"), "{}", r.stdout);
    // A different seed, different values.
    let other = Project::new();
    other.file(
        "exp.toml",
        &experiment("", &format!("strategy = \"random\"\ntrials = 4\n{SPACE}"))
            .replace("seed = 7", "seed = 8"),
    );
    other.ok(&["run", "exp.toml"]);
    assert_ne!(trials(&other), four);
}

#[test]
fn plan_shows_the_known_trials_and_the_next_generation_before_anything_runs() {
    let p = Project::new();
    let file = |trials: usize| {
        experiment(
            "",
            &format!("strategy = \"tpe\"\ntrials = {trials}\nparallel = 4\n{SPACE}"),
        )
    };
    p.file("exp.toml", &file(4));
    let r = p.ok(&["plan", "exp.toml"]);
    assert!(
        r.stdout
            .contains("search: tpe (max q.score), 0 trials known"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("next: generation 0 (4 trials: t000–t003)"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.matches("pending").count(), 4, "{}", r.stdout);
    assert_eq!(p.count("q"), 0, "plan ran nothing");
    p.ok(&["run", "exp.toml"]);
    p.file("exp.toml", &file(8));
    let r = p.ok(&["plan", "exp.toml"]);
    assert!(r.stdout.contains("4 trials known"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("next: generation 1 (4 trials: t004–t007)"),
        "{}",
        r.stdout
    );
    let first = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("t000"))
        .unwrap();
    let known = table(&p)[0]["q.score"].clone();
    assert!(first.contains(&known[..5]), "{first} / {known}");
    assert_eq!(p.count("q"), 4);
}

#[test]
fn halving_promotes_the_best_third_with_growing_budgets_and_says_why_the_rest_stopped() {
    let p = Project::new();
    p.file(
        "exp.toml",
        &experiment(
            "",
            "strategy = \"halving\"\ntrials = 9\nspace.\"stage.q.x\" = { uniform = [-1.0, 2.0] }\nbudget = { param = \"stage.q.steps\", min = 1, max = 9, eta = 3 }\n",
        ),
    );
    let r = p.ok(&["run", "exp.toml"]);
    let rows = table(&p);
    let rung = |k: &str| -> Vec<&BTreeMap<String, String>> {
        rows.iter().filter(|r| r["rung"] == k).collect()
    };
    let (r0, r1, r2) = (rung("0"), rung("1"), rung("2"));
    assert_eq!((r0.len(), r1.len(), r2.len()), (9, 3, 1), "{rows:?}");
    assert!(r0.iter().all(|r| r["steps"] == "1") && r1.iter().all(|r| r["steps"] == "3"));
    assert_eq!(r2[0]["steps"], "9");
    assert_eq!(
        p.count("q"),
        13,
        "{}\n{}",
        r.stdout,
        fs::read_to_string(p.dir.join("counts/q")).unwrap()
    );

    // Rung 1 holds the best three of rung 0, each saying which trial it continues.
    let mut ranked: Vec<(usize, f64)> = r0.iter().enumerate().map(|(i, r)| (i, score(r))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut promoted: Vec<usize> = ranked[..3].iter().map(|(i, _)| *i).collect();
    promoted.sort();
    for (row, from) in r1.iter().zip(&promoted) {
        assert_eq!(
            row["origin"],
            format!("halving rung 1, promoted from trial {from}")
        );
        assert_eq!(row["x"], r0[*from]["x"]);
        assert_eq!(row["stop_reason"].is_empty(), row["x"] == r2[0]["x"]);
    }
    // The others say why, against the cutoff (the third best), with their rank.
    let cutoff = ranked[2].1;
    let (worst, worst_score) = ranked[8];
    let reason = &r0[worst]["stop_reason"];
    assert!(
        reason.starts_with(&format!(
            "rung 0: score {} < cutoff {}, rank 9 of 9",
            short(worst_score),
            short(cutoff)
        )),
        "{reason}"
    );
    assert!(r0.iter().filter(|r| r["stop_reason"].is_empty()).count() == 3);
    // Rung 2 is rung 1's best.
    let best1 = r1
        .iter()
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .unwrap();
    assert_eq!(r2[0]["x"], best1["x"]);
    assert!(r1.iter().filter(|r| r["x"] != best1["x"]).all(
        |r| r["stop_reason"].contains("rank") && r["stop_reason"].starts_with("rung 1: score")
    ));

    // The report shows the parallel-coordinates view; the markdown table the new columns.
    let html = fs::read_to_string(p.dir.join("runs/exp/report.html")).unwrap();
    assert!(html.contains("Trials: params against q.score"));
    assert_eq!(
        html.matches("</title></path>").count(),
        13,
        "one line per trial"
    );
    let md = fs::read_to_string(p.dir.join("runs/exp/sweep.md")).unwrap();
    assert!(md.contains("| rung | origin | stop_reason |"), "{md}");
}

#[test]
fn halvings_promoted_trials_warm_start_from_their_lower_rung() {
    // `extendable = true` declares `steps` an extendable budget: each promoted trial must
    // continue the entry its lower rung committed (same x, budget / eta), not start over.
    let p = Project::new();
    p.file(
        "exp.toml",
        &experiment(
            "extendable = true",
            "strategy = \"halving\"\ntrials = 9\nspace.\"stage.q.x\" = { uniform = [-1.0, 2.0] }\nbudget = { param = \"stage.q.steps\", min = 1, max = 9, eta = 3 }\n",
        ),
    );
    p.ok(&["run", "exp.toml"]);
    let rows = table(&p);
    let entry =
        |variant: &str| fs::canonicalize(p.dir.join("runs/exp").join(variant).join("q")).unwrap();
    let manifest = |variant: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(entry(variant).join("manifest.json")).unwrap()).unwrap()
    };
    let key = |variant: &str| {
        entry(variant)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut continued = 0;
    for row in &rows {
        let m = manifest(&row["variant"]);
        if row["rung"] == "0" {
            assert!(m.get("warm_start_from").is_none(), "{m}");
            continue;
        }
        // The lower rung's trial with the same x is the source, at a third of the budget.
        let steps: u64 = row["steps"].parse().unwrap();
        let lower_rung = (row["rung"].parse::<u32>().unwrap() - 1).to_string();
        let source = rows
            .iter()
            .find(|r| r["rung"] == lower_rung && r["x"] == row["x"])
            .unwrap();
        let from = &m["warm_start_from"];
        assert_eq!(from["budget"], steps / 3, "{m}");
        assert!(
            key(&source["variant"]).starts_with(from["key"].as_str().unwrap()),
            "{m}"
        );
        continued += 1;
    }
    assert_eq!(continued, 4, "3 trials at rung 1 and 1 at rung 2");
    // The kind saw its partial dir seeded: the counter says which runs continued what.
    let counts = fs::read_to_string(p.dir.join("counts/q")).unwrap();
    let mut from: Vec<&str> = counts
        .lines()
        .filter_map(|l| l.split_once(" from "))
        .map(|(_, b)| b)
        .collect();
    from.sort();
    assert_eq!(from, ["1", "1", "1", "3"], "{counts}");
}

/// As `short_number` prints: 4 decimals, trailing zeros cut.
fn short(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[test]
fn tpe_beats_random_on_the_quadratic_for_a_fixed_seed() {
    let best = |strategy: &str| {
        let p = Project::new();
        p.file(
            "exp.toml",
            &experiment(
                "",
                &format!("strategy = \"{strategy}\"\ntrials = 30\nparallel = 5\n{SPACE}"),
            ),
        );
        p.ok(&["run", "exp.toml"]);
        table(&p).iter().map(score).fold(f64::MIN, f64::max)
    };
    let (tpe, random) = (best("tpe"), best("random"));
    // The optimum is 0.75 (x = 0.3, level = "best", steps = 1).
    assert!(tpe > random, "tpe {tpe}, random {random}");
    assert!(0.75 - tpe < 1e-2, "tpe {tpe}");
}

#[test]
fn run_locked_replays_the_locked_trials_even_when_metrics_shift() {
    let sweep = format!("strategy = \"tpe\"\ntrials = 14\nparallel = 4\n{SPACE}");
    let p = Project::new();
    p.file("exp.toml", &experiment("", &sweep));
    p.ok(&["run", "exp.toml"]);
    let locked = trials(&p);
    p.ok(&["lock", "exp.toml"]);
    let lock = fs::read_to_string(p.dir.join("exp.toml.lock")).unwrap();
    assert_eq!(lock.matches("[[trials]]").count(), 14, "{lock}");

    // Metrics shift on the rerun (a fresh cache elsewhere): proposing again would differ...
    let shifted = |args: &[&str]| {
        let out = p
            .command(args)
            .env("ENGINE_TESTBED_SCORE_SHIFT", "-0.8")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    shifted(&[
        "run",
        "exp.toml",
        "--cache-dir",
        "cache2",
        "--runs-dir",
        "runs2",
    ]);
    let reproposed = table_at(&p, "runs2");
    assert_ne!(
        reproposed, locked,
        "the shift should change what TPE proposes"
    );
    // ...but `run --locked` replays exactly the lock's trials.
    let out = shifted(&[
        "run",
        "exp.toml",
        "--locked",
        "--cache-dir",
        "cache3",
        "--runs-dir",
        "runs3",
    ]);
    assert!(out.contains("14 ran"), "{out}");
    assert_eq!(table_at(&p, "runs3"), locked);
    let plan = p.ok(&["plan", "exp.toml"]);
    assert!(
        plan.stdout
            .contains("next: nothing; the search is finished"),
        "{}",
        plan.stdout
    );
}

fn table_at(p: &Project, runs: &str) -> Vec<String> {
    let copy = Project::new();
    fs::create_dir_all(copy.dir.join("runs/exp")).unwrap();
    fs::copy(
        p.dir.join(runs).join("exp/sweep.csv"),
        copy.dir.join("runs/exp/sweep.csv"),
    )
    .unwrap();
    trials(&copy)
}

/// The `--> file:line:col` lines of rendered config errors.
fn error_sites(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("-->"))
        .map(str::trim)
        .collect()
}

#[test]
fn adaptive_config_errors_land_at_their_spans_all_in_one_pass() {
    let p = Project::new();
    p.file(
        "exp.toml",
        "[stage.q]\nkind = \"quadratic\"\n\n[sweep]\nstrategy = \"halving\"\nobjective = \"qq.score\"\ngoal = \"maxi\"\ntrials = 0\nspace.\"stage.q.x\" = { unifrom = [0, 1] }\nspace.\"stage.q.level\" = { log_uniform = [0, 1] }\nbudget = { param = \"stage.q.steps\", min = 1, max = 9, eta = 1 }\nobjetive = 3\n",
    );
    let r = p.run(&["plan", "exp.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let locations = error_sites(&r.stderr);
    assert_eq!(
        locations,
        [
            "--> exp.toml:6:13",
            "--> exp.toml:7:8",
            "--> exp.toml:8:10",
            "--> exp.toml:9:23",
            "--> exp.toml:10:41",
            "--> exp.toml:11:61",
            "--> exp.toml:12:1",
        ],
        "{}",
        r.stderr
    );
    for expected in [
        "`objective` names unknown stage `qq`",
        "did you mean `q`?",
        "unknown goal `maxi`",
        "did you mean `max`?",
        "`trials` must be an integer ≥ 1",
        "unknown distribution `unifrom`",
        "did you mean `uniform`?",
        "`log_uniform` of `stage.q.level` needs positive bounds",
        "`eta` of `budget` must be an integer ≥ 2",
        "unknown key `objetive` in `[sweep]`",
        "did you mean `objective`?",
    ] {
        assert!(
            r.stderr.contains(expected),
            "missing `{expected}` in\n{}",
            r.stderr
        );
    }

    // Second pass: what needs the kind's params.
    p.file(
        "exp.toml",
        "[stage.q]\nkind = \"quadratic\"\n\n[sweep]\nstrategy = \"halving\"\nobjective = \"q.score\"\ntrials = 3\nspace.\"stage.q.xx\" = { uniform = [0, 1] }\nspace.\"stage.q.level\" = { choice = [1, 2] }\nbudget = { param = \"stage.q.x\", min = 1, max = 9, eta = 3 }\n",
    );
    let r = p.run(&["plan", "exp.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let locations = error_sites(&r.stderr);
    assert_eq!(
        locations,
        [
            "--> exp.toml:8:7",
            "--> exp.toml:9:36",
            "--> exp.toml:9:36",
            "--> exp.toml:10:20"
        ],
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `x`?"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the budget `stage.q.x` must be an integer param of a stage"),
        "{}",
        r.stderr
    );

    // An objective metric the stage does not write: reported once the stage has run.
    p.file(
        "exp.toml",
        &experiment("", &format!("strategy = \"random\"\ntrials = 2\n{SPACE}"))
            .replace("q.score", "q.scor"),
    );
    let r = p.run(&["run", "exp.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("stage `q` wrote no number `scor`")
            && r.stderr.contains("did you mean `score`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn too_many_trials_are_refused_before_anything_is_planned() {
    let p = Project::new();
    p.file(
        "exp.toml",
        &experiment(
            "",
            &format!("strategy = \"random\"\ntrials = 1500\n{SPACE}"),
        ),
    );
    let r = p.run(&["plan", "exp.toml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("up to 1500 trials, more than the 1000 allowed")
            && r.stderr.contains("--max-variants 1500"),
        "{}",
        r.stderr
    );
    // Halving counts every rung: 800 + 400 + 200 + 100 = 1500.
    p.file("exp.toml", &experiment("", "strategy = \"halving\"\ntrials = 800\nspace.\"stage.q.x\" = { uniform = [0, 1] }\nbudget = { param = \"stage.q.steps\", min = 1, max = 8, eta = 2 }\n"));
    let r = p.run(&["plan", "exp.toml"]);
    assert!(r.stderr.contains("up to 1500 trials"), "{}", r.stderr);
    let r = p.run(&["plan", "exp.toml", "--max-variants", "1500"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
