//! A vaepipe-like binary with test-only stage kinds. It exists for the engine's own integration
//! tests (`crates/engine/tests/`), which drive it on temp dirs to check the promises that need a
//! real process: kill -9 mid-stage, two concurrent runs on one cache, exit codes, Ctrl-C. It also
//! shows how the root binary composes the engine's CLI (`#[command(flatten)]`).
//!
//! Kinds: `write` (writes a param string to a file, optionally after an upstream's file),
//! `slow` (sleeps in steps, checking cancellation, checkpointing progress into the partial dir),
//! `fail` (returns an error or panics), `count` (appends a line to a counter file outside the
//! cache, optionally waiting for a release file, so tests can count executions; with `score` it
//! also writes a `metrics.json` with the conventional sweep-table fields), `bytes` (writes
//! `files` files of `size` pseudo-random bytes from its seed, or from the clock when
//! `nondeterministic`, for the remote cache's tests).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use vaepipe_engine::{EngineCommand, GlobalArgs, ParamIssue, Registry, Role, Stage, StageCx};

#[derive(Parser)]
#[command(name = "engine-testbed")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Engine(EngineCommand),
}

fn main() -> ExitCode {
    vaepipe_engine::panic_hook::install();
    let cli = Cli::parse();
    vaepipe_engine::init_logging(&cli.global);
    let registry = Registry::new()
        .with::<WriteKind>()
        .with::<Slow>()
        .with::<Fail>()
        .with::<Count>()
        .with::<Bytes>();
    match cli.command {
        Command::Engine(cmd) => vaepipe_engine::execute(
            cmd,
            &cli.global,
            &registry,
            &vaepipe_engine::Hooks::default(),
        ),
    }
}

struct WriteKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WriteParams {
    /// What to write.
    text: String,
    /// File name inside the artifact.
    file: String,
    /// A float param, to check that `1` and `1.0` hash the same.
    scale: f64,
    /// Writes `metrics.json` with `scale` and `len` when true.
    metrics: bool,
}

impl Default for WriteParams {
    fn default() -> Self {
        WriteParams {
            text: "hello".into(),
            file: "out.txt".into(),
            scale: 1.0,
            metrics: false,
        }
    }
}

impl Stage for WriteKind {
    const KIND: &'static str = "write";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "writes `text` to `file` (after the upstream's `file`, if any)";
    type Params = WriteParams;

    fn roles() -> &'static [Role] {
        &[Role {
            name: "src",
            required: false,
            doc: "a directory holding a file to prepend",
        }]
    }

    fn validate(params: &WriteParams) -> Vec<ParamIssue> {
        if params.scale < 0.0 {
            return vec![ParamIssue {
                path: "scale".into(),
                message: format!("`scale` must be non-negative, got {}", params.scale),
                help: Some("use 0 or more".into()),
            }];
        }
        Vec::new()
    }

    fn run(params: &WriteParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        let mut text = String::new();
        if let Some(src) = cx.input("src") {
            let path = if src.is_dir() {
                src.join(&params.file)
            } else {
                src.to_path_buf()
            };
            text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        text.push_str(&params.text);
        std::fs::write(cx.out_dir().join(&params.file), &text)?;
        if params.metrics {
            let m = serde_json::json!({ "scale": params.scale, "len": text.len() });
            std::fs::write(cx.out_dir().join("metrics.json"), m.to_string())?;
        }
        cx.note("device", cx.options().device.clone());
        Ok(())
    }
}

struct Slow;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SlowParams {
    steps: u32,
    step_ms: u64,
}

impl Default for SlowParams {
    fn default() -> Self {
        SlowParams {
            steps: 10,
            step_ms: 20,
        }
    }
}

impl Stage for Slow {
    const KIND: &'static str = "slow";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "sleeps `steps` × `step_ms`, checkpointing the step into the partial dir";
    type Params = SlowParams;

    fn uses_accelerator(_: &SlowParams) -> bool {
        true
    }

    fn run(params: &SlowParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        let ckpt = cx.partial_dir().join("progress");
        let resumed_from: u32 = std::fs::read_to_string(&ckpt)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        for step in resumed_from..params.steps {
            if cx.cancelled() {
                anyhow::bail!("cancelled at step {step}");
            }
            std::thread::sleep(Duration::from_millis(params.step_ms));
            std::fs::write(&ckpt, (step + 1).to_string())?;
        }
        std::fs::write(
            cx.out_dir().join("done.txt"),
            format!("resumed_from={resumed_from}\n"),
        )?;
        Ok(())
    }
}

struct Fail;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FailParams {
    message: String,
    panic: bool,
}

impl Stage for Fail {
    const KIND: &'static str = "fail";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "fails with `message` (or panics when `panic = true`)";
    type Params = FailParams;

    fn roles() -> &'static [Role] {
        &[Role {
            name: "after",
            required: false,
            doc: "any stage, to order this one after it",
        }]
    }

    fn run(params: &FailParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        std::fs::write(cx.out_dir().join("half-written"), "x")?;
        if params.panic {
            panic!("{}", params.message);
        }
        anyhow::bail!("{}", params.message)
    }
}

struct Count;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CountParams {
    /// Counter file (outside the cache); one line is appended per execution.
    counter: PathBuf,
    label: String,
    /// Created when the stage has started (a handshake for tests).
    started_marker: Option<PathBuf>,
    /// The stage waits until this file exists before finishing.
    release: Option<PathBuf>,
    /// Claims the accelerator; with `busy_marker`, fails if another accelerator stage overlaps.
    accelerator: bool,
    busy_marker: Option<PathBuf>,
    sleep_ms: u64,
    /// Writes `metrics.json` with `final_total_loss = score` and `share_rising = score / 10`.
    score: Option<f64>,
}

impl Stage for Count {
    const KIND: &'static str = "count";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "appends `label` to `counter`, optionally waiting for `release`";
    type Params = CountParams;

    fn roles() -> &'static [Role] {
        &[Role {
            name: "after",
            required: false,
            doc: "any stage, to order this one after it",
        }]
    }

    fn uses_accelerator(p: &CountParams) -> bool {
        p.accelerator
    }

    fn run(p: &CountParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        if let Some(busy) = &p.busy_marker {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(busy)
                .context("another accelerator stage is running at the same time")?;
        }
        if let Some(parent) = p.counter.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.counter)
            .with_context(|| format!("opening counter {}", p.counter.display()))?;
        writeln!(f, "{} {}", p.label, std::process::id())?;
        if let Some(m) = &p.started_marker {
            std::fs::write(m, "started")?;
        }
        if let Some(release) = &p.release {
            while !release.exists() {
                if cx.cancelled() {
                    anyhow::bail!("cancelled while waiting for release");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        std::thread::sleep(Duration::from_millis(p.sleep_ms));
        std::fs::write(cx.out_dir().join("count.txt"), &p.label)?;
        if let Some(score) = p.score {
            let m = serde_json::json!({ "final_total_loss": score, "share_rising": score / 10.0 });
            std::fs::write(cx.out_dir().join("metrics.json"), m.to_string())?;
        }
        if let Some(busy) = &p.busy_marker {
            std::fs::remove_file(busy)?;
        }
        Ok(())
    }
}

struct Bytes;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BytesParams {
    files: u32,
    size: u64,
    /// Different bytes on every run (a stage that is not deterministic).
    nondeterministic: bool,
}

impl Stage for Bytes {
    const KIND: &'static str = "bytes";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "writes `files` files of `size` pseudo-random bytes";
    type Params = BytesParams;

    fn roles() -> &'static [Role] {
        &[Role {
            name: "after",
            required: false,
            doc: "any stage, to order this one after it",
        }]
    }

    fn run(p: &BytesParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let base = if p.nondeterministic {
            clock ^ u64::from(std::process::id())
        } else {
            cx.seed()
        };
        for f in 0..p.files {
            // xorshift64*: cheap bytes that differ per file and per seed.
            let mut state = (base ^ (u64::from(f) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
            let mut bytes = Vec::with_capacity(p.size as usize + 8);
            while (bytes.len() as u64) < p.size {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            }
            bytes.truncate(p.size as usize);
            std::fs::write(cx.out_dir().join(format!("part-{f}.bin")), &bytes)?;
        }
        Ok(())
    }
}
