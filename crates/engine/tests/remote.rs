//! The remote cache against a real S3 server (moto on 127.0.0.1, `scripts/s3/start-moto.sh`,
//! started by `.ci/run`; IAM enforced, a writer and a read-only user): push from one cache and
//! serve a fresh one entirely from the remote; one manifest and a nondeterminism report from a
//! race; kill -9 mid-push leaves no manifest; a corrupt blob is refused and recomputed;
//! read-only credentials read and cannot push. Each test uses its own prefix of the bucket.
//! Without the server the tests print SKIPPED, and fail under CI (`CI` set).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

mod support;

use support::{Project, Run};

struct S3 {
    endpoint: String,
    bucket: String,
    writer: (String, String),
    reader: (String, String),
}

fn creds(var: &str) -> (String, String) {
    let v = std::env::var(var).unwrap_or_default();
    let (k, s) = v.split_once(':').unwrap_or(("", ""));
    (k.to_owned(), s.to_owned())
}

/// The server's coordinates from `scripts/s3/start-moto.sh`, or `None` (skip) outside CI.
fn s3() -> Option<S3> {
    let Ok(endpoint) = std::env::var("VAEPIPE_S3_ENDPOINT") else {
        let message = "no S3 server: eval \"$(scripts/s3/start-moto.sh)\" first";
        assert!(
            std::env::var_os("CI").is_none(),
            "{message}; CI must have it"
        );
        eprintln!("SKIPPED: {message}");
        return None;
    };
    Some(S3 {
        endpoint,
        bucket: std::env::var("VAEPIPE_S3_BUCKET").unwrap(),
        writer: creds("VAEPIPE_S3_WRITER"),
        reader: creds("VAEPIPE_S3_READER"),
    })
}

/// One prefix per test run, so tests (and reruns) never see each other's objects.
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

struct Remote<'a> {
    s3: &'a S3,
    prefix: String,
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
}

impl<'a> Remote<'a> {
    fn new(s3: &'a S3, test: &str) -> Remote<'a> {
        let prefix = unique_prefix(test);
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&s3.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&s3.bucket)
            .with_access_key_id(&s3.writer.0)
            .with_secret_access_key(&s3.writer.1)
            .build()
            .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(
            store,
            prefix.as_str(),
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Remote {
            s3,
            prefix,
            rt,
            store,
        }
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.s3.bucket, self.prefix)
    }

    /// `project`'s command with this remote and `who`'s credentials (nothing from ~/.aws).
    fn command(&self, project: &Project, who: &(String, String), args: &[&str]) -> Command {
        let mut c = project.command(args);
        c.env("VAEPIPE_REMOTE", self.url())
            .env("AWS_ENDPOINT_URL", &self.s3.endpoint)
            .env("AWS_ACCESS_KEY_ID", &who.0)
            .env("AWS_SECRET_ACCESS_KEY", &who.1)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        c
    }

    fn run(&self, project: &Project, who: &(String, String), args: &[&str]) -> Run {
        let out = self.command(project, who, args).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok(&self, project: &Project, who: &(String, String), args: &[&str]) -> Run {
        let r = self.run(project, who, args);
        assert_eq!(
            r.code,
            0,
            "`{}` failed:\n{}\n{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r
    }

    /// Object names under the prefix that start with `under` (`entries`, `blobs`).
    fn list(&self, under: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let p = ObjectPath::from(under);
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&p)).try_collect())
            .unwrap();
        let mut names: Vec<String> = metas.iter().map(|m| m.location.to_string()).collect();
        names.sort();
        names
    }

    fn manifests(&self) -> Vec<String> {
        self.list("entries")
            .into_iter()
            .filter(|n| n.ends_with("/manifest.json"))
            .collect()
    }

    fn get(&self, name: &str) -> Vec<u8> {
        let p = ObjectPath::from(name);
        self.rt
            .block_on(async { self.store.get(&p).await?.bytes().await })
            .unwrap()
            .to_vec()
    }

    fn put(&self, name: &str, bytes: Vec<u8>) {
        let p = ObjectPath::from(name);
        self.rt
            .block_on(self.store.put(&p, PutPayload::from(bytes)))
            .unwrap();
    }
}

/// Blake3 of every file an experiment's `runs/` links show, by `stage/file`.
fn output_hashes(project: &Project, experiment: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let runs = project.dir.join("runs").join(experiment);
    for stage in fs::read_dir(&runs).unwrap().flatten() {
        let dir = stage.path();
        if !dir.is_dir() {
            continue; // report.html
        }
        for f in fs::read_dir(&dir).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name == "manifest.json" || !f.path().is_file() {
                continue;
            }
            let hash = blake3::hash(&fs::read(f.path()).unwrap())
                .to_hex()
                .to_string();
            out.push((
                format!("{}/{name}", stage.file_name().to_string_lossy()),
                hash,
            ));
        }
    }
    out.sort();
    out
}

/// A chain of three stages; `big` is over the multipart part size (8 MiB), so it travels in
/// parts both ways.
const CHAIN: &str = r#"
[experiment]
name = "shared"
seed = 3

[stage.first]
kind = "write"
text = "hello"

[stage.second]
kind = "write"
text = " world"
from.src = "first"

[stage.big]
kind = "bytes"
files = 2
size = 9000000
from.after = "second"
"#;

#[test]
fn a_fresh_cache_is_served_entirely_from_the_remote() {
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "serve");
    let a = Project::new();
    a.file("e.toml", CHAIN);
    let first = remote.ok(&a, &s3.writer, &["run", "e.toml", "--push"]);
    assert!(
        first.stdout.contains("shared: 3 ran, 0 fresh"),
        "{}",
        first.stdout
    );
    assert!(first.stderr.contains("pushed to s3://"), "{}", first.stderr);
    assert_eq!(remote.manifests().len(), 3, "one manifest per stage");

    let b = Project::new();
    b.file("e.toml", CHAIN);
    let plan = remote.ok(&b, &s3.reader, &["plan", "e.toml"]);
    assert_eq!(
        plan.stdout.matches("  remote  ").count(),
        3,
        "plan shows what the remote would serve:\n{}",
        plan.stdout
    );
    let second = remote.ok(&b, &s3.reader, &["run", "e.toml"]);
    assert!(
        second
            .stdout
            .contains("shared: 0 ran, 3 fresh (3 from the remote)"),
        "{}\n{}",
        second.stdout,
        second.stderr
    );
    assert_eq!(
        second.stderr.matches("(hit, remote, key").count(),
        3,
        "{}",
        second.stderr
    );
    assert_eq!(output_hashes(&a, "shared"), output_hashes(&b, "shared"));
    // What was pulled is an ordinary committed entry: a third run is a local hit.
    let third = remote.ok(&b, &s3.reader, &["run", "e.toml"]);
    assert!(
        third.stdout.contains("0 ran, 3 fresh, 0 not"),
        "{}",
        third.stdout
    );
    // And without the remote, `plan` has nothing to say about it.
    let c = Project::new();
    c.file("e.toml", CHAIN);
    let local = c.ok(&["plan", "e.toml"]);
    assert!(!local.stdout.contains("remote"), "{}", local.stdout);
}

const RANDOM: &str = r#"
[experiment]
name = "dice"

[stage.roll]
kind = "bytes"
files = 3
size = 4096
nondeterministic = true
"#;

#[test]
fn racing_pushes_of_one_key_leave_one_manifest_and_name_the_nondeterminism() {
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "race");
    let (a, b) = (Project::new(), Project::new());
    for p in [&a, &b] {
        p.file("e.toml", RANDOM);
        p.ok(&["run", "e.toml"]);
    }
    assert_ne!(
        output_hashes(&a, "dice"),
        output_hashes(&b, "dice"),
        "the kind is random"
    );
    let pushes: Vec<_> = [&a, &b]
        .iter()
        .map(|p| {
            remote
                .command(p, &s3.writer, &["cache", "push", "e.toml"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = pushes
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won: Vec<bool> = outputs.iter().map(|o| o.status.success()).collect();
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "exactly one push wins: {outputs:?}"
    );
    let loser = &outputs[won.iter().position(|w| !w).unwrap()];
    let text = String::from_utf8_lossy(&loser.stdout);
    assert!(text.contains("NOT DETERMINISTIC"), "{text}");
    assert!(
        text.contains("part-0.bin"),
        "names the differing file: {text}"
    );
    assert_eq!(remote.manifests().len(), 1);
    // The remote's manifest is the winner's, untouched by the loser.
    let winner = if won[0] { &a } else { &b };
    let theirs: serde_json::Value =
        serde_json::from_slice(&remote.get(&remote.manifests()[0])).unwrap();
    let hash = theirs["outputs"][0]["blake3"].as_str().unwrap().to_owned();
    assert!(output_hashes(winner, "dice")
        .iter()
        .any(|(_, h)| *h == hash));
    // The audit that recomputes finds the same nondeterminism from the remote's side.
    let audit = remote.run(
        &a,
        &s3.reader,
        &["cache", "verify", "--remote", "--recompute", "1"],
    );
    assert_eq!(audit.code, 1, "{}\n{}", audit.stdout, audit.stderr);
    assert!(
        audit.stdout.contains("DIFFERENT outputs"),
        "{}",
        audit.stdout
    );
    let local_only = a.run(&["cache", "verify", "--sample", "2"]);
    assert_eq!(local_only.code, 2, "{}", local_only.stderr);
}

#[test]
fn the_server_refuses_a_second_conditional_create() {
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "conditional");
    let p = ObjectPath::from("entries/x/manifest.json");
    let create = |b: &'static [u8]| {
        remote.rt.block_on(remote.store.put_opts(
            &p,
            PutPayload::from_static(b),
            PutMode::Create.into(),
        ))
    };
    assert!(create(b"first").is_ok());
    assert!(matches!(
        create(b"second"),
        Err(object_store::Error::AlreadyExists { .. })
    ));
    assert_eq!(remote.get("entries/x/manifest.json"), b"first");
}

const MANY: &str = r#"
[experiment]
name = "many"

[stage.files]
kind = "bytes"
files = 6
size = 200000
"#;

#[test]
fn a_push_killed_midway_leaves_no_manifest_and_the_next_one_completes_it() {
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "kill");
    let a = Project::new();
    a.file("e.toml", MANY);
    a.ok(&["run", "e.toml"]);
    // Each upload waits 1.5 s first (a slow link), so the kill lands after the first blobs
    // arrive and long before the manifest would.
    let mut push = remote
        .command(&a, &s3.writer, &["cache", "push", "e.toml"])
        .env("VAEPIPE_REMOTE_PUT_DELAY_MS", "1500")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while remote.list("blobs").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "no blob arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    push.kill().unwrap(); // SIGKILL
    push.wait().unwrap();
    assert!(
        remote.manifests().is_empty(),
        "a killed push published a manifest"
    );
    let b = Project::new();
    b.file("e.toml", MANY);
    let served = remote.ok(&b, &s3.reader, &["run", "e.toml"]);
    assert!(
        served.stdout.contains("1 ran, 0 fresh"),
        "nothing to serve yet: {}",
        served.stdout
    );

    let again = remote.ok(&a, &s3.writer, &["cache", "push", "e.toml"]);
    assert!(again.stdout.contains("files: pushed ("), "{}", again.stdout);
    assert_eq!(remote.manifests().len(), 1);
    let c = Project::new();
    c.file("e.toml", MANY);
    let served = remote.ok(&c, &s3.reader, &["run", "e.toml"]);
    assert!(
        served.stdout.contains("(1 from the remote)"),
        "{}",
        served.stdout
    );
    assert_eq!(output_hashes(&a, "many"), output_hashes(&c, "many"));
}

#[test]
fn a_corrupt_remote_blob_is_refused_recomputed_and_reported_by_verify() {
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "corrupt");
    let a = Project::new();
    a.file("e.toml", MANY);
    remote.ok(&a, &s3.writer, &["run", "e.toml", "--push"]);
    let clean = remote.ok(
        &a,
        &s3.reader,
        &[
            "cache",
            "verify",
            "--remote",
            "--recompute",
            "1",
            "--seed",
            "5",
        ],
    );
    assert!(clean.stdout.contains("6 blobs"), "{}", clean.stdout);
    assert!(clean.stdout.contains("0 problem(s)"), "{}", clean.stdout);
    assert!(
        clean.stdout.contains("recomputed files (") && clean.stdout.contains("same outputs"),
        "{}",
        clean.stdout
    );

    let blob = remote.list("blobs")[2].clone();
    let mut bytes = remote.get(&blob);
    bytes[1000] ^= 0x01;
    remote.put(&blob, bytes);

    let b = Project::new();
    b.file("e.toml", MANY);
    let run = remote.ok(&b, &s3.reader, &["run", "e.toml"]);
    assert!(run.stderr.contains("was not used"), "{}", run.stderr);
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    assert!(
        run.stdout.contains("1 ran, 0 fresh"),
        "recomputed, not served: {}",
        run.stdout
    );
    assert_eq!(output_hashes(&a, "many"), output_hashes(&b, "many"));
    assert!(
        !b.dir
            .join("cache/tmp")
            .read_dir()
            .unwrap()
            .any(|e| e.is_ok()),
        "the refused download left files in the cache's tmp"
    );

    let audit = remote.run(&a, &s3.reader, &["cache", "verify", "--remote"]);
    assert_eq!(audit.code, 1, "{}", audit.stdout);
    assert!(
        audit.stdout.contains("does not hash to its name"),
        "{}",
        audit.stdout
    );
    assert!(
        audit.stdout.contains(&blob.replace("blobs/", "")[..12]),
        "{}",
        audit.stdout
    );
}

#[test]
fn read_only_credentials_read_and_a_push_fails_saying_why() {
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "readonly");
    let a = Project::new();
    a.file("e.toml", CHAIN);
    remote.ok(&a, &s3.writer, &["run", "e.toml", "--push"]);

    let b = Project::new();
    b.file("e.toml", CHAIN);
    let read = remote.ok(&b, &s3.reader, &["run", "e.toml"]);
    assert!(
        read.stdout.contains("(3 from the remote)"),
        "{}",
        read.stdout
    );

    // A changed stage computed with `--push`: the run stands, the push is refused by name.
    let run = remote.ok(
        &b,
        &s3.reader,
        &["run", "e.toml", "--push", "--set", "stage.first.text=bye"],
    );
    assert!(run.stdout.contains("3 ran"), "{}", run.stdout);
    assert!(
        run.stderr.contains("the remote refused to write"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("may only read"), "{}", run.stderr);
    let push = remote.run(
        &b,
        &s3.reader,
        &["cache", "push", "e.toml", "--set", "stage.first.text=bye"],
    );
    assert_eq!(push.code, 1, "{}\n{}", push.stdout, push.stderr);
    assert!(
        push.stderr.contains("the remote refused to write"),
        "{}",
        push.stderr
    );
    assert_eq!(remote.manifests().len(), 3, "nothing was added");
}

#[test]
fn cache_pull_fetches_an_experiment_and_bad_remotes_are_usage_errors() {
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "pull");
    let a = Project::new();
    a.file("e.toml", CHAIN);
    remote.ok(&a, &s3.writer, &["run", "e.toml", "--push"]);
    let b = Project::new();
    b.file("e.toml", CHAIN);
    let pull = remote.ok(&b, &s3.reader, &["cache", "pull", "e.toml"]);
    assert_eq!(
        pull.stdout.matches(": pulled (").count(),
        3,
        "{}",
        pull.stdout
    );
    let again = remote.ok(&b, &s3.reader, &["cache", "pull", "e.toml"]);
    assert_eq!(
        again.stdout.matches("already in the local cache").count(),
        3
    );
    // Offline now: the pulled entries serve the run.
    let offline = b.ok(&["run", "e.toml"]);
    assert!(
        offline.stdout.contains("0 ran, 3 fresh"),
        "{}",
        offline.stdout
    );

    let bad = b.run(&["run", "e.toml", "--remote", "gs://elsewhere"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("only `s3://` remotes"),
        "{}",
        bad.stderr
    );
    b.file(
        "f.toml",
        &format!("{CHAIN}\n[cache]\nremote = \"ftp://x\"\n"),
    );
    let in_file = b.run(&["plan", "f.toml"]);
    assert_eq!(in_file.code, 2, "{}", in_file.stderr);
    assert!(
        in_file.stderr.contains("f.toml:"),
        "names the file: {}",
        in_file.stderr
    );
    let none = b.run(&["cache", "push"]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("no remote cache given"),
        "{}",
        none.stderr
    );
}

/// Slurm without a shared filesystem: each job gets a cache of its own
/// (`VAEPIPE_JOB_CACHE_DIR`, `%j` the job id), pulls its upstream entries from the remote and
/// pushes its own; the submitter pulls the finished entries to report and link them.
#[test]
fn slurm_jobs_with_caches_of_their_own_share_entries_through_the_remote() {
    if std::env::var("VAEPIPE_SLURM_TESTS").as_deref() != Ok("1") {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED slurm_jobs_with_caches_of_their_own_share_entries_through_the_remote: VAEPIPE_SLURM_TESTS is not 1"
        );
        return;
    }
    let Some(s3) = s3() else { return };
    let remote = Remote::new(&s3, "slurm");
    let p = Project::new();
    p.file("e.toml", CHAIN);
    let node_caches = p.dir.join("nodes");
    let out = remote
        .command(
            &p,
            &s3.writer,
            &["run", "e.toml", "--executor", "slurm", "--wait"],
        )
        .env("VAEPIPE_JOB_CACHE_DIR", node_caches.join("job-%j"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("shared: 3 ran, 0 fresh"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(remote.manifests().len(), 3, "each job pushed its entry");
    // Three job caches: the first holds one entry, the second pulled the first's, and so on.
    let mut per_job: Vec<usize> = fs::read_dir(&node_caches)
        .unwrap()
        .flatten()
        .map(|d| fs::read_dir(d.path().join("entries")).unwrap().count())
        .collect();
    per_job.sort();
    assert_eq!(
        per_job,
        [1, 2, 2],
        "job caches hold their own entry and their upstream's"
    );
    // The submitter's cache got them all from the remote, linked as after a local run.
    let local = Project::new();
    local.file("e.toml", CHAIN);
    local.ok(&["run", "e.toml"]);
    assert_eq!(output_hashes(&p, "shared"), output_hashes(&local, "shared"));
}
