//! The seam between the engine and the stage kinds: the `Stage` trait a kind implements and
//! `StageCx` it talks to while running. The type-erased adapter and the `Registry` the engine
//! holds live in `registry.rs`.
//!
//! A kind declares *what* it computes (its `Params`, hashed into the cache key) and never *how*
//! it runs: device and thread count arrive in `RunOptions` through `StageCx` and are never
//! serialised into a key. The engine does the glue once for every kind: deserialising the
//! params table (unknown keys rejected, defaults filled), canonicalising it for the key,
//! checking `from` roles, and calling `run` with a temporary output directory that it commits
//! atomically afterwards. A kind never touches the cache itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// One upstream slot of a kind, filled by the stage table's `from.<role> = "<name>[/subpath]"`,
/// where `<name>` is another stage (its committed artifact directory) or an `[input.<name>]`
/// (an external path, fingerprinted into the key).
#[derive(Debug, Clone, Copy)]
pub struct Role {
    pub name: &'static str,
    pub required: bool,
    /// One line for `help:` messages and docs: what the role should point at.
    pub doc: &'static str,
}

/// A param value that failed a kind's own semantic check, reported against the TOML span of
/// `path` (a dotted path inside the stage's params, e.g. `loss_features`).
#[derive(Debug, Clone)]
pub struct ParamIssue {
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

/// Everything a kind's params type must be. Serde `deny_unknown_fields` plus `#[serde(default)]`
/// on the struct gives "unknown key → error" and "explicit default = implicit default".
pub trait StageParams:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
}
impl<T: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static> StageParams for T {}

/// A stage kind. See the module docs for the division of labour with the engine.
pub trait Stage: Send + Sync + 'static {
    /// The `kind = "..."` string in experiment files.
    const KIND: &'static str;
    /// Bumped when the meaning of the output changes (with a CHANGELOG line): old entries miss.
    const VERSION: u32;
    /// One line for `vaepipe kinds` and error help.
    const ABOUT: &'static str;
    type Params: StageParams;

    /// The upstream slots this kind reads through `StageCx::input`.
    fn roles() -> &'static [Role] {
        &[]
    }

    /// Checks that serde cannot express (a layer name that does not exist, a size that the model
    /// cannot take). Reported as config errors before anything runs.
    fn validate(_params: &Self::Params) -> Vec<ParamIssue> {
        Vec::new()
    }

    /// True when the stage wants the accelerator (training, encoding): such stages never run
    /// concurrently with each other, whatever `--jobs` says.
    fn uses_accelerator(_params: &Self::Params) -> bool {
        false
    }

    /// The integer param that only says how far the stage runs (`max_steps`), declared only
    /// where continuing a finished run of budget b to budget B > b gives the same bits as a
    /// run to B from scratch (the schedule, data order and noise of a step never depend on
    /// the budget). The engine then warm-starts a miss from the committed entry of the same
    /// *family* (every other key input equal) with the largest smaller budget, through
    /// [`Stage::warm_start`]. `None` (the default), or `None` for some params: never.
    fn extendable_budget(_params: &Self::Params) -> Option<&'static str> {
        None
    }

    /// Fills `partial_dir` (empty, not yet the key's) from `source`, a committed and
    /// re-hashed entry of the same family, so that `run` resumes from `source.budget` as it
    /// would after a kill there. Called only when `extendable_budget` is `Some`. An error
    /// makes the engine run the stage from scratch instead.
    fn warm_start(
        _params: &Self::Params,
        _source: &WarmSource<'_>,
        _partial_dir: &Path,
    ) -> anyhow::Result<()> {
        anyhow::bail!("kind `{}` cannot warm-start", Self::KIND)
    }

    /// Computes the artifact into `cx.out_dir()`. Returning `Err` (or panicking) leaves no
    /// committed entry; what the stage put in `cx.partial_dir()` survives for a resume.
    fn run(params: &Self::Params, cx: &mut StageCx<'_>) -> anyhow::Result<()>;
}

/// The committed entry a warm start continues (see [`Stage::warm_start`]).
#[derive(Debug, Clone, Copy)]
pub struct WarmSource<'a> {
    /// The entry's directory (read-only; copy what the resume needs).
    pub dir: &'a Path,
    /// Its value of the budget param.
    pub budget: u64,
}

/// How a stage runs, as opposed to what it computes. Never part of a cache key.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `"auto"` (CUDA when available, else CPU), `"cpu"`, `"cuda"` or `"cuda:N"`. The engine
    /// passes it through uninterpreted; stage kinds resolve it.
    pub device: String,
    /// Intra-op threads for numeric work; `None` leaves the library default.
    pub threads: Option<usize>,
    /// Hide progress bars (`-q`, or not a terminal).
    pub quiet: bool,
}

/// What a running stage sees of the world.
pub struct StageCx<'a> {
    pub(crate) stage: &'a str,
    pub(crate) out_dir: PathBuf,
    pub(crate) partial_dir: PathBuf,
    pub(crate) inputs: BTreeMap<String, PathBuf>,
    pub(crate) seed: u64,
    pub(crate) options: &'a RunOptions,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) notes: BTreeMap<String, serde_json::Value>,
    /// Called by [`StageCx::saved`]: the scheduler turns it into `Event::Saved`.
    pub(crate) on_save: Option<&'a (dyn Fn(&Path) + Sync)>,
}

impl<'a> StageCx<'a> {
    /// Builds a context directly: for the engine's scheduler, and for unit tests of stage kinds
    /// that want to call `run` without a cache around it.
    pub fn new(
        stage: &'a str,
        out_dir: PathBuf,
        partial_dir: PathBuf,
        inputs: BTreeMap<String, PathBuf>,
        seed: u64,
        options: &'a RunOptions,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        StageCx {
            stage,
            out_dir,
            partial_dir,
            inputs,
            seed,
            options,
            cancel,
            notes: BTreeMap::new(),
            on_save: None,
        }
    }

    /// The stage's name in the experiment (`train`), for messages.
    pub fn stage_name(&self) -> &str {
        self.stage
    }

    /// Where the artifact goes. Committed atomically after `run` returns `Ok`.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Per-key scratch that survives a crash or kill, for resumable checkpoints. Removed once
    /// the entry is committed.
    pub fn partial_dir(&self) -> &Path {
        &self.partial_dir
    }

    /// The resolved path behind `from.<role>`: an upstream artifact directory (plus subpath) or
    /// an external input's path. `None` when an optional role was not given.
    pub fn input(&self, role: &str) -> Option<&Path> {
        self.inputs.get(role).map(PathBuf::as_path)
    }

    /// Like `input`, for roles the kind declared as required (the engine has checked them).
    pub fn require_input(&self, role: &str) -> anyhow::Result<&Path> {
        self.input(role).ok_or_else(|| {
            anyhow::anyhow!(
                "stage `{}` needs `from.{role}`, but none was given",
                self.stage
            )
        })
    }

    /// The experiment's seed (part of every key).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn options(&self) -> &RunOptions {
        self.options
    }

    /// True once the user asked to stop (Ctrl-C, SIGTERM). Long stages check it at step
    /// boundaries, flush their checkpoint into `partial_dir`, and return an error.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once the user asked to stop: `cx.check_cancelled()?` in any long loop.
    pub fn check_cancelled(&self) -> Result<(), crate::signal::Interrupted> {
        match self.cancelled() {
            true => Err(crate::signal::Interrupted::new(self.stage)),
            false => Ok(()),
        }
    }

    /// The flag behind [`StageCx::cancelled`], for library loops that know no `StageCx`.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// A progress handle over `len` units from `position`: a bar on a terminal, plain lines
    /// every 30 s or 10% otherwise, nothing with `-q` (see `progress.rs`).
    pub fn progress(&self, len: u64, position: u64) -> crate::progress::Progress {
        let mode = crate::progress::ProgressMode::detect(self.options.quiet);
        crate::progress::Progress::new(self.stage, len, position, mode)
    }

    /// Adds a field to the entry's manifest under `notes` (e.g. the device actually used, or
    /// `perceptual_weights = "random"`). Recorded, never hashed.
    pub fn note(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.notes.insert(key.to_owned(), value.into());
    }

    pub fn notes(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.notes
    }

    /// Says the stage has just written a save point whose files people look at (metrics,
    /// images) are in `dir`, so the run can refresh its report while the stage goes on.
    pub fn saved(&self, dir: &Path) {
        if let Some(on_save) = self.on_save {
            on_save(dir);
        }
    }
}
