//! The remote cache with the real kinds: the tiny DFC-VAE pipeline pushed from one cache to the
//! S3 server (`scripts/s3/start-moto.sh`, started by `.ci/run`) and run from a fresh cache as
//! all remote hits with identical outputs. The engine's own tests (`crates/engine/tests/remote.rs`)
//! cover races, kills, corruption and read-only credentials on test kinds.

use crate::pipeline::TINY;
use crate::support::{find_named, hash, Project, Run};

/// `args` with the test server, the writer's or the reader's credentials, and `prefix`.
fn remote_run(p: &Project, prefix: &str, writer: bool, args: &[&str]) -> Option<Run> {
    let Ok(endpoint) = std::env::var("VAEPIPE_S3_ENDPOINT") else {
        let message = "no S3 server: eval \"$(scripts/s3/start-moto.sh)\" first";
        assert!(
            std::env::var_os("CI").is_none(),
            "{message}; CI must have it"
        );
        eprintln!("SKIPPED: {message}");
        return None;
    };
    let bucket = std::env::var("VAEPIPE_S3_BUCKET").unwrap();
    let who = std::env::var(if writer {
        "VAEPIPE_S3_WRITER"
    } else {
        "VAEPIPE_S3_READER"
    })
    .unwrap();
    let (key, secret) = who.split_once(':').unwrap();
    let out = p
        .command(args)
        .env("VAEPIPE_REMOTE", format!("s3://{bucket}/{prefix}"))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(
        run.code,
        0,
        "`vaepipe {}` failed:\n{}",
        args.join(" "),
        run.all()
    );
    Some(run)
}

/// blake3 of every output file under `runs/tiny`, by path.
fn hashes(p: &Project) -> Vec<(String, String)> {
    let runs = p.path("runs/tiny");
    let mut out: Vec<(String, String)> = [
        "vae.safetensors",
        "latents.h5",
        "attribute_vectors.h5",
        "metrics.json",
    ]
    .iter()
    .flat_map(|n| find_named(&runs, n))
    .map(|f| {
        (
            f.strip_prefix(&runs).unwrap().display().to_string(),
            hash(&f),
        )
    })
    .collect();
    out.sort();
    out
}

#[test]
fn the_tiny_pipeline_runs_from_the_remote_with_identical_outputs() {
    let prefix = format!(
        "tiny-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    );
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let a = Project::new();
    a.file("tiny.toml", TINY);
    let Some(first) = remote_run(&a, &prefix, true, &["run", "tiny.toml", "--push"]) else {
        return;
    };
    assert!(
        first.stdout.contains("tiny: 6 ran, 0 fresh"),
        "{}",
        first.all()
    );

    let b = Project::new();
    b.file("tiny.toml", TINY);
    let second = remote_run(&b, &prefix, false, &["run", "tiny.toml"]).unwrap();
    assert!(
        second
            .stdout
            .contains("tiny: 0 ran, 6 fresh (6 from the remote)"),
        "{}",
        second.all()
    );
    let (ha, hb) = (hashes(&a), hashes(&b));
    assert!(ha.len() >= 4, "{ha:?}");
    assert_eq!(ha, hb);
}
