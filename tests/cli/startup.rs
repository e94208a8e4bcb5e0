//! The torch-free start-up (issue 17): engine-only verbs never map libtorch, a `run` that has a
//! stage to execute and the model verbs do. Watched through glibc's `LD_DEBUG=files`, which
//! prints every library the dynamic loader maps, in this process and in a re-executed one.

use crate::support::Project;

const EXPERIMENT: &str = r#"
[experiment]
name = "startup"
seed = 1

[input.data]
path = "data"

[stage.check]
kind = "align-check"
from = { dataset = "data" }
expected_size = [8, 8]
on_bad = "skip"
"#;

fn project() -> Project {
    let p = Project::new();
    p.file("exp.toml", EXPERIMENT);
    for (i, shade) in [40u8, 200].into_iter().enumerate() {
        let path = p.path(&format!("data/person/{i}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 90, 30]))
            .save(path)
            .unwrap();
    }
    p
}

/// Runs `vaepipe args` with the loader's trace on; returns (exit code, all output, whether
/// libtorch_cpu.so was mapped).
fn traced(p: &Project, args: &[&str]) -> (i32, String, bool) {
    let out = p
        .command(args)
        .env("LD_DEBUG", "files")
        .output()
        .expect("vaepipe runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mapped = stderr
        .lines()
        .any(|l| l.contains("file=") && l.contains("libtorch_cpu.so"));
    let all = format!("{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), all, mapped)
}

#[test]
fn engine_only_verbs_and_a_cached_run_start_without_libtorch() {
    let p = project();
    for args in [
        &["kinds"][..],
        &["plan", "exp.toml"],
        &["dag", "exp.toml"],
        &["--help"],
    ] {
        let (code, all, mapped) = traced(&p, args);
        assert_eq!(code, 0, "vaepipe {args:?}: {all}");
        assert!(!mapped, "`vaepipe {}` mapped libtorch", args.join(" "));
    }
    // The first run executes align-check: libtorch is loaded (by re-executing) before it.
    let (code, all, mapped) = traced(&p, &["run", "exp.toml"]);
    assert_eq!(code, 0, "{all}");
    assert!(
        mapped,
        "a run with a stage to execute must load libtorch: {all}"
    );
    assert!(all.contains("1 ran, 0 fresh"), "{all}");
    // The second is a no-op and never loads it.
    let (code, all, mapped) = traced(&p, &["run", "exp.toml"]);
    assert_eq!(code, 0, "{all}");
    assert!(all.contains("0 ran, 1 fresh"), "{all}");
    assert!(!mapped, "a fully cached run mapped libtorch");
    let (code, all, mapped) = traced(&p, &["gc", "--dry-run"]);
    assert_eq!(code, 0, "{all}");
    assert!(!mapped, "gc --dry-run mapped libtorch");
}

#[test]
fn a_run_that_reexecutes_logs_each_line_once() {
    let p = project();
    let out = p
        .command(&["run", "exp.toml", "--set", "stage.check.on_bad=\"skip\""])
        .output()
        .expect("vaepipe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The first process plans, finds a stage to execute and re-executes itself with libtorch;
    // only the second may log the run.
    assert_eq!(
        stderr.matches("with --set stage.check.on_bad").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn model_verbs_and_version_load_libtorch() {
    let p = project();
    let (code, all, mapped) = traced(&p, &["--version"]);
    assert_eq!(code, 0, "{all}");
    assert!(mapped && all.contains("libtorch loaded "), "{all}");
    // A model verb's usage error comes after loading libtorch, with its own exit code.
    let (code, all, mapped) = traced(&p, &["bench", "--steps", "0"]);
    assert_eq!(code, 2, "{all}");
    assert!(mapped, "{all}");
    assert!(all.contains("--steps must be at least 1"), "{all}");
}
