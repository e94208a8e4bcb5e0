//! A vaepipe-like binary with test-only stage kinds. It exists for the engine's own integration
//! tests (`crates/engine/tests/`), which drive it on temp dirs to check the promises that need a
//! real process: kill -9 mid-stage, two concurrent runs on one cache, exit codes, Ctrl-C. It also
//! shows how the root binary composes the engine's CLI (`#[command(flatten)]`).
//!
//! Kinds: `write` (writes a param string to a file, optionally after an upstream's file),
//! `slow` (sleeps in steps, checking cancellation, checkpointing progress into the partial dir),
//! `fail` (returns an error or panics), `count` (appends a line to a counter file outside the
//! cache, optionally waiting for a release file, so tests can count executions; with `score` it
//! also writes a `metrics.json` with the conventional sweep-table fields), `extend` (a
//! resumable chain of `steps` hash steps whose budget `steps` is extendable, for warm starts),
//! `quadratic` (an objective with a known optimum for adaptive sweeps: `score = 1 - (x - 0.3)² +
//! bonus(level) - 0.5 / steps`, written to `metrics.json` with `loss = -score`; it counts its
//! runs like `count`; `ENGINE_TESTBED_SCORE_SHIFT=s` adds `s·x`, as a rerun elsewhere might
//! shift a metric), `bytes` (writes `files` files of `size` pseudo-random bytes from its seed,
//! or from the clock when `nondeterministic`, for the remote cache's tests).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use vaepipe_engine::{
    EngineCommand, GlobalArgs, ParamIssue, Registry, Role, Stage, StageCx, WarmSource,
};

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
        .with::<Extend>()
        .with::<Quadratic>()
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

struct Extend;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExtendParams {
    /// The budget: how many chain steps to compute.
    steps: u64,
    /// Mixed into the chain: a param other than the budget.
    salt: u64,
    /// `false` declares no extendable budget, so the kind is never warm-started.
    extendable: bool,
    step_ms: u64,
    /// Outside the cache: one line per step computed, so tests see how many ran.
    counter: Option<PathBuf>,
}

impl Default for ExtendParams {
    fn default() -> Self {
        ExtendParams {
            steps: 4,
            salt: 1,
            extendable: true,
            step_ms: 0,
            counter: None,
        }
    }
}

/// `state` (in the partial dir, and kept in the entry): `<step> <value>`.
const EXTEND_STATE: &str = "state";

impl Stage for Extend {
    const KIND: &'static str = "extend";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "a resumable hash chain of `steps` steps; `steps` is an extendable budget";
    type Params = ExtendParams;

    fn extendable_budget(p: &ExtendParams) -> Option<&'static str> {
        p.extendable.then_some("steps")
    }

    fn warm_start(
        _: &ExtendParams,
        source: &WarmSource<'_>,
        partial_dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        std::fs::copy(
            source.dir.join(EXTEND_STATE),
            partial_dir.join(EXTEND_STATE),
        )?;
        Ok(())
    }

    fn run(p: &ExtendParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        let state = cx.partial_dir().join(EXTEND_STATE);
        let (start, mut value) = match std::fs::read_to_string(&state) {
            Ok(text) => {
                let (step, value) = text.trim().split_once(' ').context("bad state")?;
                (step.parse::<u64>()?, value.parse::<u64>()?)
            }
            Err(_) => (0, p.salt),
        };
        if start > 0 {
            tracing::info!("stage `{}`: resuming from step {start}", cx.stage_name());
        }
        cx.note("resumed_from", start);
        for step in start + 1..=p.steps {
            cx.check_cancelled()?;
            std::thread::sleep(Duration::from_millis(p.step_ms));
            value = (value ^ step)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(17);
            let tmp = cx.partial_dir().join("state.tmp");
            std::fs::write(&tmp, format!("{step} {value}"))?;
            std::fs::rename(&tmp, &state)?;
            if let Some(counter) = &p.counter {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(counter)?;
                writeln!(f, "{step}")?;
            }
        }
        std::fs::write(cx.out_dir().join("value.txt"), value.to_string())?;
        std::fs::write(
            cx.out_dir().join(EXTEND_STATE),
            format!("{} {value}", p.steps),
        )?;
        Ok(())
    }
}

struct Quadratic;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QuadraticParams {
    x: f64,
    /// `best` adds 0.25 to the score, `good` 0.1, anything else nothing.
    level: String,
    /// The budget: more steps, a little better (`- 0.5 / steps`).
    steps: u32,
    /// Appends `x steps` per execution, when given (outside the cache).
    counter: Option<PathBuf>,
    /// Sleeps `x × sleep_ms_per_x` ms, so trials finish in the order of their `x`.
    sleep_ms_per_x: f64,
    /// Declares `steps` an extendable budget, so halving's promoted trials warm-start.
    extendable: bool,
}

impl Default for QuadraticParams {
    fn default() -> Self {
        QuadraticParams {
            x: 0.0,
            level: "plain".into(),
            steps: 1,
            counter: None,
            sleep_ms_per_x: 0.0,
            extendable: false,
        }
    }
}

impl Stage for Quadratic {
    const KIND: &'static str = "quadratic";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "writes `score = 1 - (x - 0.3)^2 + bonus(level) - 0.5 / steps` to metrics.json";
    type Params = QuadraticParams;

    fn validate(p: &QuadraticParams) -> Vec<ParamIssue> {
        if p.steps == 0 {
            return vec![ParamIssue {
                path: "steps".into(),
                message: "`steps` must be at least 1".into(),
                help: None,
            }];
        }
        Vec::new()
    }

    fn extendable_budget(p: &QuadraticParams) -> Option<&'static str> {
        p.extendable.then_some("steps")
    }

    /// The score does not depend on history, so continuing is only a marker the run reports.
    fn warm_start(
        _: &QuadraticParams,
        source: &WarmSource<'_>,
        partial_dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        std::fs::write(partial_dir.join("continued"), source.budget.to_string())?;
        Ok(())
    }

    fn run(p: &QuadraticParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        // `x steps`, and ` from B` when continuing an entry of budget B.
        let continued = std::fs::read_to_string(cx.partial_dir().join("continued"))
            .map(|b| format!(" from {b}"))
            .unwrap_or_default();
        if let Some(counter) = &p.counter {
            if let Some(parent) = counter.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(counter)?;
            writeln!(f, "{} {}{continued}", p.x, p.steps)?;
        }
        let sleep = (p.x.abs() * p.sleep_ms_per_x).min(5_000.0);
        std::thread::sleep(Duration::from_millis(sleep as u64));
        let bonus = match p.level.as_str() {
            "best" => 0.25,
            "good" => 0.1,
            _ => 0.0,
        };
        // A rerun on other hardware may shift metrics; tests simulate that with this variable.
        let shift: f64 = std::env::var("ENGINE_TESTBED_SCORE_SHIFT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        let score = 1.0 - (p.x - 0.3).powi(2) + bonus - 0.5 / f64::from(p.steps) + shift * p.x;
        let m = serde_json::json!({ "score": score, "loss": -score, "steps": p.steps });
        std::fs::write(cx.out_dir().join("metrics.json"), m.to_string())?;
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
