//! The README's first command on a fresh clone: the tracked tree alone (no cache, no runs, no
//! build outputs) must plan every shipped experiment. A clean-clone CI never runs the demo, so
//! this is what catches a tracked file that the runner then refuses (a `cache/.gitignore` once
//! made `run experiments/demo.toml` exit 2 on every fresh clone).

use std::path::Path;
use std::process::Command;

use crate::support::Project;

/// Copies the files git tracks in this checkout into `project`, as a clone would have them.
fn copy_tracked_tree(project: &Project) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listing = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git runs (the tests run from a git checkout)");
    assert!(listing.status.success(), "git ls-files failed");
    let mut copied = 0;
    for rel in listing.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).expect("tracked paths are UTF-8"));
        let from = root.join(rel);
        // A file deleted in the work tree but not yet in the index is not part of a clone.
        if !from.is_file() {
            continue;
        }
        let to = project.dir.join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &to).expect("copy a tracked file");
        copied += 1;
    }
    assert!(copied > 50, "only {copied} tracked files found");
}

#[test]
fn every_shipped_experiment_plans_on_a_fresh_clone() {
    let p = Project::new();
    copy_tracked_tree(&p);
    let mut planned = Vec::new();
    for entry in std::fs::read_dir(p.path("experiments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rel = format!(
            "experiments/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let r = p.run(&["plan", &rel]);
        if rel == "experiments/smile.toml" {
            // The published run needs CelebA, CASIA and facenet's weights, which a clone lacks:
            // it must say so and point at the demo, not fail on the checkout itself.
            assert_eq!(r.code, 2, "{rel}:\n{}", r.all());
            assert!(
                r.stderr.contains("run experiments/demo.toml"),
                "{}",
                r.stderr
            );
            assert!(!r.stderr.contains("CACHEDIR.TAG"), "{}", r.stderr);
        } else {
            assert_eq!(
                r.code,
                0,
                "`vaepipe plan {rel}` on a fresh clone:\n{}",
                r.all()
            );
            assert!(r.stdout.contains("never run"), "{rel}:\n{}", r.stdout);
        }
        planned.push(rel);
    }
    planned.sort();
    assert!(
        planned.contains(&"experiments/demo.toml".to_owned()),
        "{planned:?}"
    );
    assert!(
        p.path("cache/CACHEDIR.TAG").is_file(),
        "the default cache was created"
    );
}
