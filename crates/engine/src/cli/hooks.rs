//! What the binary plugs into the engine's verbs besides its stage kinds: the [`Hooks`] value
//! handed to [`super::execute`]. The engine calls them; it never depends on what they read
//! (tensors, HDF5, images), which stays in the root crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lock::OutputComparator;
use crate::report::SweepSummary;

/// Builds image outputs of a sweep outside the engine (contact sheets, all-variant loss plots):
/// called after `sweep.json` is written, with the summary and `runs/<experiment>`; returns
/// (caption, PNG path) pairs to embed in the sweep's `report.html`.
pub type SweepHook =
    dyn Fn(&SweepSummary, &Path) -> anyhow::Result<Vec<(String, PathBuf)>> + Send + Sync;

/// Called by `run` once it knows that some stage must execute here, before any does; an error
/// stops the run. The binary uses it to load libtorch only then (`src/torch_runtime.rs`), so a
/// fully cached run never pays for it.
pub type BeforeExecuteHook = dyn Fn() -> anyhow::Result<()> + Send + Sync;

/// The binary's optional hooks: `Hooks::default().compare_outputs(f).sweep_images(g)`.
#[derive(Clone, Default)]
pub struct Hooks {
    compare_outputs: Option<Arc<OutputComparator>>,
    sweep_images: Option<Arc<SweepHook>>,
    before_execute: Option<Arc<BeforeExecuteHook>>,
}

impl Hooks {
    /// Plugs a comparator into `verify`: for an output whose bytes differ from the lock it gets
    /// (locked file, recomputed file) and may return a detail line (per-tensor max differences
    /// for `.safetensors`/`.h5`), or `None` for formats it does not read.
    #[must_use]
    pub fn compare_outputs(
        mut self,
        compare: impl Fn(&Path, &Path) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.compare_outputs = Some(Arc::new(compare));
        self
    }

    /// Plugs in what builds a sweep's images (see [`SweepHook`]).
    #[must_use]
    pub fn sweep_images(
        mut self,
        hook: impl Fn(&SweepSummary, &Path) -> anyhow::Result<Vec<(String, PathBuf)>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.sweep_images = Some(Arc::new(hook));
        self
    }

    /// Plugs in what must happen before the first stage executes locally (see
    /// [`BeforeExecuteHook`]).
    #[must_use]
    pub fn before_execute(
        mut self,
        hook: impl Fn() -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.before_execute = Some(Arc::new(hook));
        self
    }

    /// Runs the before-execute hook, if any.
    pub fn prepare_to_execute(&self) -> anyhow::Result<()> {
        self.before_execute.as_deref().map_or(Ok(()), |hook| hook())
    }

    pub fn output_comparator(&self) -> Option<&OutputComparator> {
        self.compare_outputs.as_deref()
    }

    pub fn sweep_hook(&self) -> Option<&SweepHook> {
        self.sweep_images.as_deref()
    }
}
