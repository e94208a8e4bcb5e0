//! Integration tests of the safety promises (issue 21), on the real `engine-testbed` binary:
//! an experiment file cannot smuggle shell commands into job scripts or write outside `runs/`,
//! `gc` deletes only what it knows is unlinked (and old enough), a cache never adopts a
//! directory holding someone's files, and a committed entry is read-only and never served once
//! it was changed. Each test failed before its fix.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure

use std::fs;
use std::path::{Path, PathBuf};

mod support;

use support::{Project, Run};

const WRITE: &str = "[stage.w]\nkind = \"write\"\ntext = \"hello world\"\n";

fn entry(p: &Project, link: &str) -> PathBuf {
    fs::canonicalize(p.dir.join(link)).unwrap()
}

fn entries(cache: &Path) -> usize {
    fs::read_dir(cache.join("entries"))
        .map(|it| it.count())
        .unwrap_or(0)
}

/// Owner write permission on an entry dir, the way a user would force an edit.
fn writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).unwrap().permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o200)).unwrap();
}

/// The testbed in another directory than the project's (after moving it).
fn run_in(p: &Project, dir: &Path, args: &[&str]) -> Run {
    let out = p.command(args).current_dir(dir).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_newline_in_an_executor_value_is_a_config_error_and_no_script_is_written() {
    let p = Project::new();
    // The review's payload: the newline ended the `#SBATCH` line and `touch INJECTED` ran.
    p.file(
        "exp.toml",
        "[stage.w]\nkind = \"write\"\n\n[executor]\nkind = \"slurm\"\nextra = [\"--comment=x\\\\\\\"\\ntouch INJECTED\\n#\", \"--output=/etc/cron.d/x\"]\n",
    );
    for verb in ["plan", "run"] {
        let r = p.run(&[verb, "exp.toml"]);
        assert_eq!(r.code, 2, "{verb}: {}", r.stderr);
        assert!(
            r.stderr.contains("exp.toml:6:10")
                && r.stderr.contains("holds a control character ('\\n')"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(
                "vaepipe sets `--output` itself; `--output=/etc/cron.d/x` cannot be in `extra`"
            ),
            "{}",
            r.stderr
        );
    }
    assert!(
        !p.dir.join("cache/jobs").exists(),
        "no job script was written"
    );
    assert!(!p.dir.join("INJECTED").exists());
}

#[test]
fn a_name_from_a_file_named_dots_is_refused_and_nothing_is_written_outside_runs() {
    let p = Project::new();
    p.file("...toml", "[stage.faces]\nkind = \"write\"\n");
    let r = p.run(&["run", "...toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "the experiment name `..` (from the file name) is not a valid directory name"
        ),
        "{}",
        r.stderr
    );
    assert!(!p.dir.join("faces").exists(), "wrote ./faces outside runs/");
}

#[test]
fn committed_entries_are_read_only_and_a_tampered_one_is_recomputed_not_served() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    p.file(
        "exp.toml",
        &format!("{WRITE}[stage.v]\nkind = \"write\"\ntext = \"!\"\nfrom = {{ src = \"w\" }}\n"),
    );
    p.ok(&["run", "exp.toml"]);
    let w = entry(&p, "runs/exp/w");
    for path in [w.clone(), w.join("out.txt"), w.join("manifest.json")] {
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable: {mode:o}", path.display());
    }

    // Edited through the link (same length, so only the mtime gives it away).
    writable(&w.join("out.txt"));
    fs::write(p.dir.join("runs/exp/w/out.txt"), "HELLO WORLD").unwrap();
    let r = p.ok(&["run", "exp.toml"]);
    assert!(r.stdout.contains("1 ran, 1 fresh"), "{}", r.stdout);
    assert!(
        r.stderr.contains("was changed after it was committed"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::read_to_string(p.dir.join("runs/exp/w/out.txt")).unwrap(),
        "hello world"
    );
    // The downstream entry kept what it read from the untouched upstream.
    assert_eq!(
        fs::read_to_string(p.dir.join("runs/exp/v/out.txt")).unwrap(),
        "hello world!"
    );
}

#[test]
fn cache_verify_reports_every_damaged_entry_and_symlinks_inside_entries() {
    let p = Project::new();
    p.file(
        "exp.toml",
        &format!("{WRITE}[stage.v]\nkind = \"write\"\ntext = \"other\"\n"),
    );
    p.ok(&["run", "exp.toml"]);
    let (w, v) = (entry(&p, "runs/exp/w"), entry(&p, "runs/exp/v"));
    // A dangling link (unreadable: the check used to stop there) and a truncated file.
    writable(&w);
    std::os::unix::fs::symlink("/nonexistent/secret", w.join("evil")).unwrap();
    writable(&v.join("out.txt"));
    fs::write(v.join("out.txt"), "ot").unwrap();
    let r = p.run(&["cache", "verify"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    for key in [&w, &v] {
        let key = key.file_name().unwrap().to_string_lossy();
        assert!(
            r.stdout.contains(&format!("damaged entry {key}")),
            "{}",
            r.stdout
        );
    }
    assert!(
        r.stdout
            .contains("`evil` is a symlink (to `/nonexistent/secret`)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("checked 2 entries, 2 damaged"),
        "{}",
        r.stdout
    );
    // `gc` still deletes read-only entries once they are unlinked.
    fs::remove_file(p.dir.join("runs/exp/w")).unwrap();
    fs::remove_file(p.dir.join("runs/exp/v")).unwrap();
    let gc = p.ok(&["gc", "--older-than", "0s"]);
    assert!(gc.stdout.contains("deleted 2 item(s)"), "{}", gc.stdout);
    assert_eq!(entries(&p.dir.join("cache")), 0);
}

#[test]
fn gc_keeps_the_entries_of_a_moved_project() {
    let p = Project::new();
    p.file("exp.toml", WRITE);
    p.ok(&["run", "exp.toml"]);
    let moved = p.dir.parent().unwrap().join("moved");
    fs::rename(&p.dir, &moved).unwrap();
    let r = run_in(&p, &moved, &["gc", "--older-than", "0s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("deleted 0 item(s)"), "{}", r.stdout);
    assert_eq!(
        fs::read_to_string(moved.join("runs/exp/w/out.txt")).unwrap(),
        "hello world"
    );
}

#[test]
fn gc_keeps_an_entry_whose_link_it_cannot_check() {
    // A shared cache outside the project; the project moves away (as another user's
    // unreadable `runs/` would, the old link can no longer be looked at).
    let p = Project::new();
    p.file("exp.toml", WRITE);
    let shared = p.dir.parent().unwrap().join("shared-cache");
    let shared_arg = shared.to_string_lossy().into_owned();
    p.ok(&["run", "exp.toml", "--cache-dir", &shared_arg]);
    fs::rename(&p.dir, p.dir.parent().unwrap().join("gone")).unwrap();
    let elsewhere = p.dir.parent().unwrap().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let r = run_in(
        &p,
        &elsewhere,
        &["gc", "--cache-dir", &shared_arg, "--older-than", "0s"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("deleted 0 item(s)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("its directory cannot be read"),
        "{}",
        r.stdout
    );
    assert_eq!(entries(&shared), 1);
}

#[test]
fn gc_scans_runs_dir_and_drops_a_root_only_when_its_link_is_known_gone() {
    let p = Project::new();
    p.file("exp.toml", WRITE);
    p.ok(&["run", "exp.toml", "--runs-dir", "out"]);
    // Without its root file the link in `out/` still keeps the entry, when gc looks there.
    for root in fs::read_dir(p.dir.join("cache/roots")).unwrap() {
        fs::remove_file(root.unwrap().path()).unwrap();
    }
    let r = p.ok(&["gc", "--runs-dir", "out", "--older-than", "0s"]);
    assert!(r.stdout.contains("deleted 0 item(s)"), "{}", r.stdout);
    assert_eq!(entries(&p.dir.join("cache")), 1);

    // The link is removed: its directory is readable and the link absent, so it goes.
    p.ok(&["run", "exp.toml", "--runs-dir", "out"]);
    fs::remove_file(p.dir.join("out/exp/w")).unwrap();
    let r = p.ok(&["gc", "--runs-dir", "out", "--older-than", "0s"]);
    assert!(r.stdout.contains("deleted 1 item(s)"), "{}", r.stdout);
    assert_eq!(entries(&p.dir.join("cache")), 0);
    assert_eq!(fs::read_dir(p.dir.join("cache/roots")).unwrap().count(), 0);

    let bad = p.run(&["gc", "--older-than", "soon"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("write an age like"), "{}", bad.stderr);
}

#[test]
fn a_non_empty_directory_without_a_cache_tag_is_never_adopted() {
    let p = Project::new();
    p.file("exp.toml", WRITE);
    p.file("data/precious.txt", "mine");
    let r = p.run(&["plan", "exp.toml", "--cache-dir", "data"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is not empty and is not a vaepipe cache (it has no CACHEDIR.TAG)"),
        "{}",
        r.stderr
    );
    assert!(!p.dir.join("data/CACHEDIR.TAG").exists());
    assert_eq!(p.run(&["gc", "--cache-dir", "data"]).code, 2);
    assert_eq!(
        fs::read_to_string(p.dir.join("data/precious.txt")).unwrap(),
        "mine"
    );
    // An empty directory becomes a cache.
    fs::create_dir_all(p.dir.join("empty")).unwrap();
    p.ok(&["plan", "exp.toml", "--cache-dir", "empty"]);
    assert!(p.dir.join("empty/CACHEDIR.TAG").is_file());
}

#[test]
fn a_directory_holding_only_a_vcs_placeholder_becomes_a_cache() {
    let p = Project::new();
    p.file("exp.toml", WRITE);
    // What an old checkout has: a tracked `cache/.gitignore` and nothing else.
    p.file("cache/.gitignore", "*\n!.gitignore\n");
    p.ok(&["run", "exp.toml", "--cache-dir", "cache"]);
    assert!(p.dir.join("cache/CACHEDIR.TAG").is_file());
    assert_eq!(
        fs::read_to_string(p.dir.join("cache/.gitignore")).unwrap(),
        "*\n!.gitignore\n"
    );
    p.ok(&["gc", "--cache-dir", "cache", "--older-than", "0s"]);
    assert!(
        p.dir.join("cache/.gitignore").is_file(),
        "gc kept the placeholder"
    );

    // A placeholder beside anything else, or a directory wearing a placeholder's name, is
    // still someone's directory.
    p.file("mixed/.gitignore", "*\n");
    p.file("mixed/notes.txt", "mine");
    fs::create_dir_all(p.dir.join("dir/.gitkeep")).unwrap();
    for refused in ["mixed", "dir"] {
        let r = p.run(&["plan", "exp.toml", "--cache-dir", refused]);
        assert_eq!(r.code, 2, "{refused}: {}", r.stderr);
        assert!(!p.dir.join(refused).join("CACHEDIR.TAG").exists());
    }
}

#[test]
fn a_sweep_over_the_variant_cap_is_refused_unless_confirmed() {
    let p = Project::new();
    let values: Vec<String> = (0..40).map(|i| format!("\"t{i}\"")).collect();
    let files: Vec<String> = (0..30).map(|i| format!("\"f{i}.txt\"")).collect();
    p.file(
        "exp.toml",
        &format!(
            "{WRITE}\n[sweep]\n\"stage.w.text\" = [{}]\n\"stage.w.file\" = [{}]\n",
            values.join(", "),
            files.join(", ")
        ),
    );
    let r = p.run(&["plan", "exp.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("the sweep has 1200 variants")
            && r.stderr.contains("--max-variants 1200"),
        "{}",
        r.stderr
    );
    let r = p.run(&["plan", "exp.toml", "--max-variants", "1199"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
