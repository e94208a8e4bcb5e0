//! Lock files and verification: `vaepipe lock`, `run --locked`, `vaepipe verify`.
//!
//! `vaepipe lock FILE` writes `FILE.lock` (TOML) beside the experiment: the content
//! fingerprint (blake3 over every file, whatever the input's `fingerprint` mode) of every
//! external input, and for every stage (every `<variant>/<stage>` of a sweep) its resolved
//! config (kind, kind version, seed, canonical params, `from` wiring), its key, the device and
//! thread count its entry was computed with, and the blake3 of each output file. Every stage must
//! have a committed entry: lock after a run.
//!
//! `run --locked` recomputes the input fingerprints by content and compares the resolved config
//! stage by stage; any difference refuses the run and is named ("input `celeba` changed: 3 files
//! modified (e.g. `a.jpg`)", "stage `train`: param `alfa` changed: 1.0 → 2.0", "stage `x` is not
//! in the lock"). Keys are *not* compared: with `fingerprint = "stat"` a key includes mtimes,
//! which differ on every fresh copy of the same data, so a locked run may recompute stages whose
//! config and inputs equal the lock's.
//!
//! `vaepipe verify FILE [--stage S]` first does the `--locked` check, then recomputes the chosen
//! stages (default: all) into a scratch cache beside the real one, each reading its upstream
//! entries from the real cache (so a difference is attributed to the stage that made it, not
//! inherited), and compares each output file's blake3 with the lock. Files that differ are
//! named; a comparator plugged in by the binary (`Registry::with_output_comparator`) may add a
//! per-tensor max difference for formats it can read. The scratch cache is deleted afterwards.
//!
//! # What is bitwise repeatable, and when
//!
//! The engine promises only what it controls: keys are a pure function of the resolved config
//! and the input fingerprints, manifests are never outputs (`manifest.json` holds timestamps and
//! is excluded from the output hashes), and a stage always starts from an empty output directory
//! with the same upstream bytes. Whether a stage's own bytes repeat is the kind's property:
//!
//! - **Repeatable everywhere**: outputs computed by our own code from integers and the seed:
//!   the synthetic dataset, file lists, attribute files, JSON written with sorted keys.
//! - **Repeatable on the same machine class**: CPU float work (training, encoding, probes, PNG
//!   grids rendered from floats) gives bitwise equal outputs when run on the CPU with the same
//!   thread count (`--threads`; `verify` defaults to the count recorded in the lock), the same
//!   vaepipe and libtorch build, and the same CPU instruction set (oneDNN/MKL pick kernels by
//!   CPU features: AVX2 and AVX-512 machines may round differently). Resuming from a checkpoint
//!   keeps this (data order and noise are functions of seed and step).
//! - **Not bitwise repeatable**: CUDA runs (atomic-add reductions in cuDNN/cuBLAS reorder sums),
//!   a different thread count (reduction order), a different BLAS or libtorch version, and any
//!   format that embeds a wall-clock time (HDF5 object timestamps must be disabled by the
//!   writer). For these `verify` reports which files differ and, through the comparator, by how
//!   much per tensor.
//! - **Keys** are equal across machines when inputs are fingerprinted by content; with
//!   `fingerprint = "stat"` they include mtimes and are machine-local by design.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cache::dirty::{flatten, DirtyReason};
use crate::cache::fingerprint::{self, FingerprintError, ListingDiff};
use crate::cache::manifest::{rfc3339, Manifest};
use crate::cache::store::hash_outputs;
use crate::cache::{CacheStore, StoreError};
use crate::config::{FingerprintMode, Sweep, UpstreamTarget};
use crate::scheduler::{self, ExecuteOptions, Outcome, Plan, SweepPlan};
use crate::stage::RunOptions;

pub const LOCK_FORMAT: u32 = 1;

/// `FILE.lock`, as TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    pub format: u32,
    pub experiment: String,
    pub tool_version: String,
    pub created_at: String,
    /// The `--set`s and `--sweep`s the lock was made with; their effect is in each stage's params.
    #[serde(default)]
    pub arguments: Vec<String>,
    /// By input name.
    pub inputs: BTreeMap<String, LockedInput>,
    /// By `<stage>`, or `<variant>/<stage>` in a sweep.
    pub stages: BTreeMap<String, LockedStage>,
    /// An adaptive sweep's trial list, in trial order: `run --locked` replays exactly these
    /// trials instead of proposing again (a rerun's metrics may shift on a GPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<LockedTrial>,
}

/// One trial of an adaptive sweep, as it was proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedTrial {
    pub name: String,
    pub generation: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<usize>,
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Param path → its value as JSON text.
    pub values: BTreeMap<String, String>,
}

impl LockFile {
    /// The locked trial list, as the config layer replays it.
    pub fn fixed_trials(&self) -> Vec<crate::config::FixedTrial> {
        self.trials
            .iter()
            .map(|t| crate::config::FixedTrial {
                name: t.name.clone(),
                generation: t.generation,
                rung: t.rung,
                origin: t.origin.clone(),
                stop_reason: t.stop_reason.clone(),
                values: t
                    .values
                    .iter()
                    .map(|(path, text)| {
                        let value = serde_json::from_str(text)
                            .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
                        (path.clone(), value)
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The trial list of an adaptive sweep (empty for grid/zip).
fn locked_trials(sweep: &Sweep) -> Vec<LockedTrial> {
    let Some(search) = &sweep.search else {
        return Vec::new();
    };
    search
        .trials
        .iter()
        .zip(&sweep.variants)
        .map(|(t, exp)| LockedTrial {
            name: t.name.clone(),
            generation: t.generation,
            rung: t.rung,
            origin: t.origin.clone(),
            stop_reason: t.stop_reason.clone(),
            values: exp
                .variant
                .iter()
                .flat_map(|v| v.values.iter())
                .map(|(path, v)| (path.clone(), v.to_string()))
                .collect(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedInput {
    /// As resolved when locking (informational; moving the data is fine).
    pub path: String,
    /// Content digest: blake3 over every file's relative path, size and blake3.
    pub digest: String,
    pub files: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedStage {
    pub kind: String,
    pub kind_version: u32,
    pub seed: u64,
    /// Canonical JSON of the resolved params (a string: TOML has no null).
    pub params: String,
    pub key: String,
    /// Device and threads the locked entry was computed with (from its manifest).
    pub device: String,
    pub threads: Option<usize>,
    /// Role → `stage:<name>[/subpath]` or `input:<name>[/subpath]`.
    pub from: BTreeMap<String, String>,
    /// Output path (relative to the entry) → blake3.
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read `{}`: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} ha{} no cache entry to lock: {}; run the experiment first", if .0.len() == 1 { "stage" } else { "stages" }, if .0.len() == 1 { "s" } else { "ve" }, .0.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "))]
    NotRun(Vec<String>),
    #[error("upstream `{upstream}` of stage `{stage}` is not in the cache; run the experiment before verifying")]
    UpstreamMissing { stage: String, upstream: String },
    #[error("unknown stage `{name}` in `--stage`{}", help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
    UnknownStage { name: String, help: Option<String> },
}

/// `smile.toml` → `smile.toml.lock`.
pub fn lock_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    file.with_file_name(name)
}

impl LockFile {
    pub fn read(path: &Path) -> Result<LockFile, LockError> {
        let err = |message: String| LockError::Read {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# Written by `vaepipe lock`; checked by `vaepipe run --locked` and `vaepipe verify`.\n# Regenerate it with `vaepipe lock` rather than editing it.\n{body}")
    }

    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        crate::atomic_file::write_atomic(path, self.to_toml().as_bytes()).map_err(|source| {
            LockError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// Every (lock id, variant, stage name, plan node), in plan order per variant.
fn stage_ids(sweep: &Sweep, plan: &SweepPlan) -> Vec<(String, usize, String, usize)> {
    let mut out = Vec::new();
    for (v, stages) in plan.variant_stages.iter().enumerate() {
        for (name, node) in stages {
            let id = match &sweep.variants[v].variant {
                Some(info) => format!("{}/{name}", info.name),
                None => name.clone(),
            };
            out.push((id, v, name.clone(), *node));
        }
    }
    out
}

/// The config part of a locked stage (no key, no outputs).
fn stage_config(sweep: &Sweep, plan: &SweepPlan, v: usize, name: &str, node: usize) -> LockedStage {
    let ps = &plan.plan.stages[node];
    let mut from = BTreeMap::new();
    if let Some(spec) = sweep.variants[v].stage(name) {
        for u in &spec.from {
            let (what, target, sub) = match &u.target {
                UpstreamTarget::Stage { name, subpath } => ("stage", name, subpath),
                UpstreamTarget::Input { name, subpath } => ("input", name, subpath),
            };
            let sub = if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            };
            from.insert(u.role.clone(), format!("{what}:{target}{sub}"));
        }
    }
    let mut params = String::new();
    crate::cache::key::write_canonical(&ps.preimage.params, &mut params);
    LockedStage {
        kind: ps.preimage.kind.clone(),
        kind_version: ps.preimage.kind_version,
        seed: ps.preimage.seed,
        params,
        key: ps.key.to_string(),
        device: String::new(),
        threads: None,
        from,
        outputs: BTreeMap::new(),
    }
}

fn fingerprint_inputs(
    sweep: &Sweep,
    store: &CacheStore,
) -> Result<BTreeMap<String, (LockedInput, fingerprint::InputFingerprint)>, LockError> {
    let mut out = BTreeMap::new();
    for (name, input) in &sweep.base.inputs {
        let fp = store.fingerprint_input(
            &input.path,
            FingerprintMode::Content,
            crate::cache::HashFiles::All,
        )?;
        out.insert(
            name.clone(),
            (
                LockedInput {
                    path: input.path.display().to_string(),
                    digest: fp.digest.clone(),
                    files: fp.files,
                    bytes: fp.bytes,
                },
                fp,
            ),
        );
    }
    Ok(out)
}

/// Builds the lock of a planned experiment whose stages all have committed entries.
pub fn build(
    sweep: &Sweep,
    plan: &SweepPlan,
    store: &CacheStore,
    tool_version: &str,
    arguments: Vec<String>,
) -> Result<LockFile, LockError> {
    let mut stages = BTreeMap::new();
    let mut missing = Vec::new();
    for (id, v, name, node) in stage_ids(sweep, plan) {
        let mut locked = stage_config(sweep, plan, v, &name, node);
        match store.get(&plan.plan.stages[node].key) {
            Some(artifact) => {
                locked.device = artifact.manifest.device.clone();
                locked.threads = artifact.manifest.threads;
                locked.outputs = artifact
                    .manifest
                    .outputs
                    .iter()
                    .map(|o| (o.path.clone(), o.blake3.clone()))
                    .collect();
            }
            None => missing.push(id.clone()),
        }
        stages.insert(id, locked);
    }
    if !missing.is_empty() {
        return Err(LockError::NotRun(missing));
    }
    let inputs = fingerprint_inputs(sweep, store)?
        .into_iter()
        .map(|(k, (locked, _))| (k, locked))
        .collect();
    Ok(LockFile {
        format: LOCK_FORMAT,
        experiment: sweep.base.name.clone(),
        tool_version: tool_version.to_owned(),
        created_at: rfc3339(std::time::SystemTime::now()),
        arguments,
        inputs,
        stages,
        trials: locked_trials(sweep),
    })
}

/// One way the experiment differs from its lock.
#[derive(Debug, Clone, PartialEq)]
pub enum LockDifference {
    InputChanged {
        input: String,
        diff: Option<ListingDiff>,
    },
    InputNotLocked {
        input: String,
    },
    InputGone {
        input: String,
    },
    StageNotLocked {
        stage: String,
    },
    StageGone {
        stage: String,
    },
    Stage {
        stage: String,
        reason: DirtyReason,
    },
}

impl LockDifference {
    /// The difference as a sentence.
    pub fn present(&self) -> String {
        match self {
            LockDifference::InputChanged { input, diff } => DirtyReason::InputChanged {
                role: String::new(),
                input: input.clone(),
                diff: diff.clone(),
            }
            .present(),
            LockDifference::InputNotLocked { input } => {
                format!("input `{input}` is not in the lock")
            }
            LockDifference::InputGone { input } => {
                format!("input `{input}` is in the lock but not in the experiment")
            }
            LockDifference::StageNotLocked { stage } => {
                format!("stage `{stage}` is not in the lock")
            }
            LockDifference::StageGone { stage } => {
                format!("stage `{stage}` is in the lock but not in the experiment")
            }
            LockDifference::Stage { stage, reason } => {
                format!("stage `{stage}`: {}", reason.present())
            }
        }
    }
}

/// Everything that differs between the experiment (inputs by content, resolved config) and the
/// lock; empty when `run --locked` may proceed.
pub fn check(
    lock: &LockFile,
    sweep: &Sweep,
    plan: &SweepPlan,
    store: &CacheStore,
) -> Result<Vec<LockDifference>, LockError> {
    let mut out = Vec::new();
    let now = fingerprint_inputs(sweep, store)?;
    for (name, (locked, fp)) in &now {
        match lock.inputs.get(name) {
            None => out.push(LockDifference::InputNotLocked {
                input: name.clone(),
            }),
            Some(l) if l.digest != locked.digest => out.push(LockDifference::InputChanged {
                input: name.clone(),
                diff: store.diff_listings(&l.digest, &fp.digest),
            }),
            Some(_) => {}
        }
    }
    for name in lock.inputs.keys() {
        if !now.contains_key(name) {
            out.push(LockDifference::InputGone {
                input: name.clone(),
            });
        }
    }
    let ids = stage_ids(sweep, plan);
    for (id, v, name, node) in &ids {
        let Some(locked) = lock.stages.get(id) else {
            out.push(LockDifference::StageNotLocked { stage: id.clone() });
            continue;
        };
        let cur = stage_config(sweep, plan, *v, name, *node);
        let mut push = |reason| {
            out.push(LockDifference::Stage {
                stage: id.clone(),
                reason,
            })
        };
        if cur.kind != locked.kind {
            push(DirtyReason::KindChanged {
                old: locked.kind.clone(),
                new: cur.kind.clone(),
            });
            continue;
        }
        if cur.kind_version != locked.kind_version {
            push(DirtyReason::KindVersionChanged {
                old: locked.kind_version,
                new: cur.kind_version,
            });
        }
        if cur.seed != locked.seed {
            push(DirtyReason::SeedChanged {
                old: locked.seed,
                new: cur.seed,
            });
        }
        let old: serde_json::Value = serde_json::from_str(&locked.params).unwrap_or_default();
        let new: serde_json::Value = serde_json::from_str(&cur.params).unwrap_or_default();
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &old, &mut a);
        flatten("", &new, &mut b);
        let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for p in names {
            if a.get(p) != b.get(p) {
                push(DirtyReason::ParamChanged {
                    name: p.clone(),
                    old: a.get(p).map(|v| (*v).clone()),
                    new: b.get(p).map(|v| (*v).clone()),
                });
            }
        }
        let roles: std::collections::BTreeSet<&String> =
            locked.from.keys().chain(cur.from.keys()).collect();
        for role in roles {
            if locked.from.get(role) != cur.from.get(role) {
                push(DirtyReason::FromChanged {
                    role: role.clone(),
                    old: locked.from.get(role).cloned(),
                    new: cur.from.get(role).cloned(),
                });
            }
        }
    }
    for id in lock.stages.keys() {
        if !ids.iter().any(|(i, ..)| i == id) {
            out.push(LockDifference::StageGone { stage: id.clone() });
        }
    }
    Ok(out)
}

/// Compares a locked output file with its recomputed twin (paths: the committed file, when the
/// cache still holds the locked bytes, and the recomputed file); returns a one-line detail such
/// as per-tensor max differences, or `None` when it cannot read the format.
pub type OutputComparator = dyn Fn(&Path, &Path) -> Option<String> + Send + Sync;

/// One recomputed output file whose bytes differ from the lock.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDifference {
    pub path: String,
    /// From the comparator.
    pub detail: Option<String>,
}

/// The verdict on one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageVerification {
    /// The lock id (`train`, `alfa-0.5/train`).
    pub stage: String,
    /// Output files in the lock.
    pub files: usize,
    pub differing: Vec<FileDifference>,
    /// In the lock, not recomputed.
    pub missing: Vec<String>,
    /// Recomputed, not in the lock.
    pub extra: Vec<String>,
    /// The recomputation failed.
    pub error: Option<String>,
    pub elapsed_s: f64,
}

impl StageVerification {
    pub fn bitwise_equal(&self) -> bool {
        self.differing.is_empty()
            && self.missing.is_empty()
            && self.extra.is_empty()
            && self.error.is_none()
    }
}

/// How [`verify`] runs stages.
pub struct VerifyOptions<'a> {
    /// `--stage`: lock ids (`train`, or `<variant>/train`; a bare stage name in a sweep means
    /// that stage in every variant). Empty: all.
    pub stages: Vec<String>,
    pub device: String,
    /// `None`: the thread count recorded in the lock for each stage.
    pub threads: Option<usize>,
    pub compare: Option<&'a OutputComparator>,
    pub tool_version: String,
    /// Called before each stage is recomputed.
    pub on_stage: &'a (dyn Fn(&str) + Sync),
}

/// Recomputes the chosen stages into a scratch cache beside `store` and compares their outputs
/// with the lock (see the module docs). Call [`check`] first.
pub fn verify(
    lock: &LockFile,
    sweep: &Sweep,
    plan: &SweepPlan,
    store: &CacheStore,
    options: &VerifyOptions<'_>,
) -> Result<Vec<StageVerification>, LockError> {
    let ids = stage_ids(sweep, plan);
    let mut chosen: Vec<&(String, usize, String, usize)> = Vec::new();
    for want in &options.stages {
        let matching: Vec<_> = ids
            .iter()
            .filter(|(id, _, name, _)| id == want || name == want)
            .collect();
        if matching.is_empty() {
            let all: Vec<&str> = ids.iter().map(|(id, ..)| id.as_str()).collect();
            return Err(LockError::UnknownStage {
                name: want.clone(),
                help: crate::config::error::suggestion(want, &all, "stages"),
            });
        }
        chosen.extend(matching);
    }
    if options.stages.is_empty() {
        chosen = ids.iter().collect();
    }
    // One recomputation per plan node.
    let mut seen = std::collections::BTreeSet::new();
    chosen.retain(|(_, _, _, node)| seen.insert(*node));

    let parent = store.root().parent().unwrap_or(store.root());
    let scratch_dir = parent.join(format!(
        ".vaepipe-verify.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _cleanup = RemoveOnDrop(scratch_dir.clone());
    let scratch = CacheStore::open(&scratch_dir)?;
    let exps: Vec<&crate::config::Experiment> = sweep.variants.iter().collect();
    let mut out = Vec::new();
    for (id, _, name, node) in chosen {
        let ps = &plan.plan.stages[*node];
        // The recomputation reads its upstream entries from the real cache (its inputs point
        // there): held under shared locks, so `gc` leaves them while it runs.
        let mut _reading_upstream = Vec::new();
        for dep in &ps.deps {
            let up = &plan.plan.stages[*dep];
            _reading_upstream.push(store.read_lock(&up.key)?);
            if store.get(&up.key).is_none() {
                return Err(LockError::UpstreamMissing {
                    stage: id.clone(),
                    upstream: up.name.clone(),
                });
            }
        }
        let locked = lock.stages.get(id);
        let run = RunOptions {
            device: options.device.clone(),
            threads: options.threads.or(locked.and_then(|l| l.threads)),
            quiet: true,
        };
        let mut single = ps.clone();
        single.forced = true;
        single.deps = Vec::new();
        // Checked and locked above, in the real cache; the scratch cache has no upstream.
        single.upstream = BTreeMap::new();
        single.links = Vec::new();
        single.name = name.clone();
        let one = Plan {
            experiment: plan.plan.experiment.clone(),
            stages: vec![single],
        };
        let exec = ExecuteOptions {
            run: &run,
            jobs: 1,
            cancel: Arc::new(AtomicBool::new(false)),
            runs_dir: scratch_dir.join("runs"),
            tool_version: options.tool_version.clone(),
            remote: None,
        };
        (options.on_stage)(id);
        let report = scheduler::execute_variants(&exps, &one, &scratch, &exec, &|_| {});
        let mut v = StageVerification {
            stage: id.clone(),
            files: locked.map_or(0, |l| l.outputs.len()),
            differing: Vec::new(),
            missing: Vec::new(),
            extra: Vec::new(),
            error: None,
            elapsed_s: 0.0,
        };
        match report.results.first().map(|(_, o)| o) {
            Some(Outcome::Ran { dir, duration, .. }) => {
                v.elapsed_s = duration.as_secs_f64();
                let got: BTreeMap<String, String> = hash_outputs(dir)?
                    .into_iter()
                    .filter(|f| f.path != crate::cache::manifest::MANIFEST_FILE)
                    .map(|f| (f.path, f.blake3))
                    .collect();
                let want = locked.map(|l| l.outputs.clone()).unwrap_or_default();
                let committed = Manifest::read(&store.entry_dir(&ps.key), Some(&ps.key));
                for (path, hash) in &want {
                    match got.get(path) {
                        None => v.missing.push(path.clone()),
                        Some(h) if h != hash => {
                            let original = committed
                                .as_ref()
                                .filter(|m| {
                                    m.outputs
                                        .iter()
                                        .any(|o| o.path == *path && o.blake3 == *hash)
                                })
                                .map(|_| store.entry_dir(&ps.key).join(path));
                            let detail = match (options.compare, original) {
                                (Some(compare), Some(original)) => {
                                    compare(&original, &dir.join(path))
                                }
                                _ => None,
                            };
                            v.differing.push(FileDifference {
                                path: path.clone(),
                                detail,
                            });
                        }
                        Some(_) => {}
                    }
                }
                v.extra = got
                    .keys()
                    .filter(|p| !want.contains_key(*p))
                    .cloned()
                    .collect();
            }
            Some(Outcome::Failed { error }) => v.error = Some(error.clone()),
            Some(other) => v.error = Some(format!("not recomputed ({})", other.status())),
            None => v.error = Some("not recomputed".into()),
        }
        out.push(v);
    }
    Ok(out)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = crate::cache::store::remove_tree(&self.0); // its entries are read-only
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn lock_path_is_beside_the_file() {
        assert_eq!(
            lock_path(Path::new("experiments/smile.toml")),
            Path::new("experiments/smile.toml.lock")
        );
    }

    #[test]
    fn lock_round_trips_through_toml() {
        let lock = LockFile {
            format: LOCK_FORMAT,
            experiment: "e".into(),
            tool_version: "vaepipe 0".into(),
            created_at: "now".into(),
            arguments: vec!["--set stage.a.x=1".into()],
            inputs: BTreeMap::from([(
                "data".into(),
                LockedInput {
                    path: "/d".into(),
                    digest: "ab".into(),
                    files: 2,
                    bytes: 3,
                },
            )]),
            stages: BTreeMap::from([(
                "alfa-0.5/train".into(),
                LockedStage {
                    kind: "k".into(),
                    kind_version: 1,
                    seed: 2,
                    params: "{\"a\":null}".into(),
                    key: "k".into(),
                    device: "cpu".into(),
                    threads: None,
                    from: BTreeMap::from([("after".into(), "stage:a/sub".into())]),
                    outputs: BTreeMap::from([("dir/x.txt".into(), "cd".into())]),
                },
            )]),
            trials: vec![LockedTrial {
                name: "t003-r1".into(),
                generation: 1,
                rung: Some(1),
                origin: "halving rung 1, promoted from trial 3".into(),
                stop_reason: None,
                values: BTreeMap::from([("stage.train.alfa".into(), "0.5".into())]),
            }],
        };
        let text = lock.to_toml();
        assert!(
            text.contains("[stages.\"alfa-0.5/train\".outputs]"),
            "{text}"
        );
        let back: LockFile = toml::from_str(&text).unwrap();
        assert_eq!(back, lock);
    }
}
