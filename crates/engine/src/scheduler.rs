//! Planning and running: turns an [`Experiment`] into a [`Plan`] (every selected stage with its
//! key, preimage and [`Freshness`], cargo's `Job = Work + Freshness`), then executes it.
//!
//! Keys are static: a stage's key depends on its upstream *keys*, not on their outputs, so the
//! whole plan (and `vaepipe plan`'s explanations) is known before anything runs. Execution runs
//! ready stages concurrently up to `jobs`, never two accelerator stages at once, and reports
//! progress as [`Event`]s for the CLI to render. Each stage goes through the cache's lock →
//! re-check → temp dir → run → commit sequence; a failure or panic (caught) stops only the
//! stages downstream of it, and committed upstream entries stay.
//!
//! A sweep is planned as one DAG ([`plan_sweep`]): every variant is planned on its own, then
//! stages are merged by key, so a stage whose key coincides across variants (the data, the
//! align check) is one node that runs once and is linked into every variant's directory.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::dirty::{self, DirtyReason};
use crate::cache::family::{self, FamilyRecord, SourceCheck, WarmStartRecord};
use crate::cache::fingerprint::{self, InputFingerprint};
use crate::cache::key::{InputRef, KeyPreimage, StageKey, UpstreamRef, KEY_FORMAT};
use crate::cache::manifest::{rfc3339, InputRecord, Manifest, UpstreamRecord, MANIFEST_FORMAT};
use crate::cache::remote::{Pulled, PushOutcome, Remote};
use crate::cache::store::{CacheStore, Lookup, StoreError};
use crate::config::{Experiment, FingerprintMode, Sweep, UpstreamTarget};
use crate::graph::StageGraph;
use crate::stage::{RunOptions, StageCx};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Fingerprint(#[from] fingerprint::FingerprintError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown stage `{name}` in `{flag}`{}", help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
    UnknownStage {
        flag: &'static str,
        name: String,
        help: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Freshness {
    /// A valid entry exists for the key: running the stage is a no-op.
    Fresh,
    Dirty(Vec<DirtyReason>),
}

#[derive(Debug, Clone)]
pub struct PlannedStage {
    /// Index into `Experiment::stages`.
    pub index: usize,
    pub name: String,
    pub kind: String,
    pub key: StageKey,
    pub preimage: KeyPreimage,
    pub freshness: Freshness,
    pub forced: bool,
    pub uses_accelerator: bool,
    /// Resolved paths by role: upstream entry dirs (+ subpath) or input paths (+ subpath).
    pub inputs: BTreeMap<String, PathBuf>,
    pub upstream: BTreeMap<String, UpstreamRecord>,
    pub input_records: BTreeMap<String, InputRecord>,
    /// Indices into `Plan::stages` of the stages this one waits for.
    pub deps: Vec<usize>,
    /// Which experiment (sweep variant) `index` refers to; 0 outside a sweep.
    pub variant: usize,
    /// Every (variant, stage name) this node stands for: one outside a sweep, several when
    /// variants share the key.
    pub users: Vec<(usize, String)>,
    /// The `runs/` links made to the entry, relative to the runs dir
    /// (`<experiment>/<stage>`, `<experiment>/<variant>/<stage>`).
    pub links: Vec<PathBuf>,
    /// For a kind with an extendable budget: the key's family (`cache::family`).
    pub family: Option<FamilyRecord>,
    /// The entry a dirty stage will continue, as far as planning can tell (the run looks
    /// again, and re-hashes the entry, before it uses it).
    pub warm_start: Option<WarmStartRecord>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub experiment: String,
    /// Selected stages, upstream before downstream.
    pub stages: Vec<PlannedStage>,
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--only`: these stages and what they need upstream.
    pub only: Vec<String>,
    /// `--force`: rerun these even when fresh.
    pub force: Vec<String>,
}

fn stage_index(exp: &Experiment, flag: &'static str, name: &str) -> Result<usize, EngineError> {
    exp.stages
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| EngineError::UnknownStage {
            flag,
            name: name.to_owned(),
            help: crate::config::error::suggestion(name, &exp.stage_names(), "stages"),
        })
}

/// Computes every selected stage's key and freshness. Fingerprints inputs (once per path) and
/// stores their listings so later plans can explain changes.
pub fn plan(
    exp: &Experiment,
    graph: &StageGraph,
    store: &CacheStore,
    runs_dir: &Path,
    options: &PlanOptions,
) -> Result<Plan, EngineError> {
    plan_variant(exp, 0, graph, store, runs_dir, options, &mut HashMap::new())
}

type Fingerprints = HashMap<(PathBuf, FingerprintMode), Arc<InputFingerprint>>;

/// A sweep's plan: one node per distinct key over all variants.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// Nodes upstream first; `PlannedStage::variant` says whose spec runs a node, `users` and
    /// `links` say whom it serves.
    pub plan: Plan,
    /// Per variant: each selected stage's name and its node in `plan.stages`, in topo order.
    pub variant_stages: Vec<Vec<(String, usize)>>,
}

impl SweepPlan {
    /// The experiments `plan.stages[i].variant` indexes.
    pub fn experiments<'a>(&self, sweep: &'a Sweep) -> Vec<&'a Experiment> {
        sweep.variants.iter().collect()
    }
}

/// Plans every variant of a sweep and merges stages with equal keys into one node. Without axes
/// this is exactly [`plan`] of the single experiment. A node used by every variant under one
/// name is a *shared* stage: it is also linked at `runs/<experiment>/<stage>` and keeps the
/// stage's name; other nodes are named after the swept values their variants agree on
/// (`alfa-0.5/train`).
pub fn plan_sweep(
    sweep: &Sweep,
    store: &CacheStore,
    runs_dir: &Path,
    options: &PlanOptions,
) -> Result<SweepPlan, EngineError> {
    let mut fingerprints = HashMap::new();
    let mut merged: Vec<PlannedStage> = Vec::new();
    let mut by_key: HashMap<StageKey, usize> = HashMap::new();
    let mut variant_stages = Vec::new();
    for (v, exp) in sweep.variants.iter().enumerate() {
        let graph = StageGraph::new(exp);
        let p = plan_variant(exp, v, &graph, store, runs_dir, options, &mut fingerprints)?;
        let mut local = Vec::with_capacity(p.stages.len());
        let mut mine = Vec::new();
        for mut ps in p.stages {
            let user = (v, ps.name.clone());
            let link = ps.links.clone();
            let m = match by_key.get(&ps.key) {
                Some(&m) if sweep.is_sweep() => {
                    let node = &mut merged[m];
                    node.users.push(user.clone());
                    node.links.extend(link);
                    if ps.forced && !node.forced {
                        node.forced = true;
                        node.warm_start = None;
                        node.freshness = Freshness::Dirty(vec![DirtyReason::Forced]);
                    }
                    m
                }
                _ => {
                    ps.deps = ps.deps.iter().map(|&d| local[d]).collect();
                    by_key.insert(ps.key.clone(), merged.len());
                    merged.push(ps);
                    merged.len() - 1
                }
            };
            local.push(m);
            mine.push((user.1, m));
        }
        variant_stages.push(mine);
    }
    if sweep.is_sweep() {
        let all = sweep.variants.len();
        for node in &mut merged {
            let first = node.users[0].1.clone();
            let shared = node.users.len() == all && node.users.iter().all(|(_, n)| *n == first);
            if shared {
                node.name = first.clone();
                node.links.push(Path::new(&sweep.base.name).join(&first));
                continue;
            }
            // An adaptive sweep's trials are named after their index, not their float values.
            if sweep.search.is_some() {
                let trial = sweep.variants[node.users[0].0].variant.as_ref();
                node.name = format!("{}/{first}", trial.map_or("", |t| t.name.as_str()));
                continue;
            }
            let agreed: Vec<(&str, &serde_json::Value)> = sweep
                .axes
                .iter()
                .enumerate()
                .filter_map(|(a, axis)| {
                    let value_of = |v: usize| {
                        sweep.variants[v]
                            .variant
                            .as_ref()
                            .map(|info| &info.values[a].1)
                    };
                    let value = value_of(node.users[0].0)?;
                    node.users
                        .iter()
                        .all(|(v, _)| value_of(*v) == Some(value))
                        .then_some((axis.label.as_str(), value))
                })
                .collect();
            node.name = if agreed.is_empty() {
                first
            } else {
                format!("{}/{first}", crate::config::sweep::variant_name(&agreed))
            };
        }
    }
    Ok(SweepPlan {
        plan: Plan {
            experiment: sweep.base.name.clone(),
            stages: merged,
        },
        variant_stages,
    })
}

fn plan_variant(
    exp: &Experiment,
    variant: usize,
    graph: &StageGraph,
    store: &CacheStore,
    runs_dir: &Path,
    options: &PlanOptions,
    fingerprints: &mut Fingerprints,
) -> Result<Plan, EngineError> {
    let selected = if options.only.is_empty() {
        (0..exp.stages.len()).collect()
    } else {
        let roots: Result<Vec<usize>, _> = options
            .only
            .iter()
            .map(|n| stage_index(exp, "--only", n))
            .collect();
        graph.with_ancestors(&roots?)
    };
    let forced: Result<Vec<usize>, _> = options
        .force
        .iter()
        .map(|n| stage_index(exp, "--force", n))
        .collect();
    let forced = forced?;

    let mut keys: HashMap<usize, StageKey> = HashMap::new();
    let mut position: HashMap<usize, usize> = HashMap::new();
    let mut stages = Vec::new();
    for &i in graph.topo_order() {
        let spec = &exp.stages[i];
        let mut upstream_refs = BTreeMap::new();
        let mut upstream = BTreeMap::new();
        let mut input_refs = BTreeMap::new();
        let mut input_records = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        for u in &spec.from {
            match &u.target {
                UpstreamTarget::Stage { name, subpath } => {
                    let j = exp.stages.iter().position(|s| &s.name == name).unwrap_or(i);
                    // Topological order guarantees the upstream key is known.
                    let Some(key) = keys.get(&j).cloned() else {
                        continue;
                    };
                    inputs.insert(u.role.clone(), join_sub(&store.entry_dir(&key), subpath));
                    upstream_refs.insert(
                        u.role.clone(),
                        UpstreamRef {
                            key: key.clone(),
                            subpath: subpath.clone(),
                        },
                    );
                    upstream.insert(
                        u.role.clone(),
                        UpstreamRecord {
                            stage: name.clone(),
                            key,
                            subpath: subpath.clone(),
                        },
                    );
                }
                UpstreamTarget::Input { name, subpath } => {
                    let Some(input) = exp.inputs.get(name) else {
                        continue;
                    };
                    let path = join_sub(&input.path, subpath);
                    let fp = match fingerprints.get(&(path.clone(), input.mode)) {
                        Some(fp) => fp.clone(),
                        None => {
                            let fp = Arc::new(store.fingerprint_input(
                                &path,
                                input.mode,
                                crate::cache::HashFiles::Changed,
                            )?);
                            fingerprints.insert((path.clone(), input.mode), fp.clone());
                            fp
                        }
                    };
                    input_refs.insert(
                        u.role.clone(),
                        InputRef {
                            input: name.clone(),
                            subpath: subpath.clone(),
                            mode: fp.mode.as_str().to_owned(),
                            digest: fp.digest.clone(),
                        },
                    );
                    input_records.insert(
                        u.role.clone(),
                        InputRecord {
                            input: name.clone(),
                            path: path.display().to_string(),
                            mode: fp.mode.as_str().to_owned(),
                            digest: fp.digest.clone(),
                            files: fp.files,
                        },
                    );
                    inputs.insert(u.role.clone(), path);
                }
            }
        }
        let preimage = KeyPreimage {
            format: KEY_FORMAT,
            kind: spec.kind.kind().to_owned(),
            kind_version: spec.kind.version(),
            params: spec.params.canonical.clone(),
            seed: exp.seed,
            upstream: upstream_refs,
            inputs: input_refs,
        };
        let key = preimage.key();
        let family = spec
            .kind
            .extendable_budget(&spec.params)
            .and_then(|param| family::family_of(&preimage, param));
        keys.insert(i, key.clone());
        if !selected.contains(&i) {
            continue;
        }
        let is_forced = forced.contains(&i);
        let freshness = if is_forced {
            Freshness::Dirty(vec![DirtyReason::Forced])
        } else if store.get(&key).is_some() {
            Freshness::Fresh
        } else {
            // A variant's own link first; a new variant is explained against the unswept run.
            let own = runs_dir.join(exp.runs_subdir()).join(&spec.name);
            let unswept = runs_dir.join(&exp.name).join(&spec.name);
            let upstream_names = upstream
                .iter()
                .map(|(r, u)| (r.clone(), u.stage.clone()))
                .collect();
            let linked = store
                .linked_key(&own)
                .or_else(|| store.linked_key(&unswept));
            Freshness::Dirty(match linked {
                Some(old) if old == key => vec![DirtyReason::EntryMissing],
                Some(old) => match store.get(&old) {
                    Some(a) => dirty::explain(&a.manifest, &preimage, &upstream_names, store),
                    None => vec![DirtyReason::NeverRun],
                },
                None => vec![DirtyReason::NeverRun],
            })
        };
        let warm_start = match (&freshness, &family) {
            (Freshness::Dirty(_), Some(f)) => planned_warm_start(store, &key, f, is_forced, exp),
            _ => None,
        };
        let deps = graph
            .upstream(i)
            .into_iter()
            .filter_map(|j| position.get(&j).copied())
            .collect();
        position.insert(i, stages.len());
        stages.push(PlannedStage {
            index: i,
            name: spec.name.clone(),
            kind: spec.kind.kind().to_owned(),
            key,
            preimage,
            freshness,
            forced: is_forced,
            uses_accelerator: spec.uses_accelerator,
            inputs,
            upstream,
            input_records,
            deps,
            variant,
            users: vec![(variant, spec.name.clone())],
            links: vec![exp.runs_subdir().join(&spec.name)],
            family,
            warm_start,
        });
    }
    Ok(Plan {
        experiment: exp.name.clone(),
        stages,
    })
}

/// What a dirty extendable stage will continue: the source its partial dir was seeded from
/// when it holds a killed run's work, else its family's best lower-budget entry (unless
/// forced, or `warm_start = false`).
fn planned_warm_start(
    store: &CacheStore,
    key: &StageKey,
    family: &FamilyRecord,
    forced: bool,
    exp: &Experiment,
) -> Option<WarmStartRecord> {
    if family::has_files(&store.partial_dir(key)) {
        return family::read_marker(store, key);
    }
    if forced || !exp.warm_start {
        return None;
    }
    family::find_source(store, family, SourceCheck::Stat).map(|c| c.record)
}

/// At run time, under the key's lock: seeds the (empty) partial dir from the family's best
/// lower-budget entry, re-hashed first, through the kind's `warm_start`. Returns what the
/// manifest records; `None` runs from scratch (or resumes what the partial dir holds).
fn warm_start(
    exp: &Experiment,
    ps: &PlannedStage,
    store: &CacheStore,
    partial_dir: &Path,
    on_event: &(dyn Fn(&Event) + Sync),
) -> Option<WarmStartRecord> {
    let family = ps.family.as_ref()?;
    if family::has_files(partial_dir) {
        return family::read_marker(store, &ps.key);
    }
    if ps.forced || !exp.warm_start {
        return None;
    }
    let source = family::find_source(store, family, SourceCheck::Rehash)?;
    let spec = &exp.stages[ps.index];
    let seeded = family::seed_partial(store, &ps.key, &source.record, |dir| {
        let from = crate::stage::WarmSource {
            dir: &source.artifact.dir,
            budget: source.record.budget,
        };
        spec.kind.warm_start(&spec.params, &from, dir)
    });
    if let Err(e) = seeded {
        tracing::warn!(
            "stage `{}`: cannot warm-start from {}… ({e:#}); it runs from scratch",
            ps.name,
            source.record.key.short()
        );
        return None;
    }
    on_event(&Event::WarmStart {
        stage: ps.name.clone(),
        key: ps.key.clone(),
        from: source.record.clone(),
    });
    Some(source.record)
}

fn join_sub(base: &Path, subpath: &str) -> PathBuf {
    if subpath.is_empty() {
        base.to_path_buf()
    } else {
        base.join(subpath)
    }
}

/// What happened to one stage.
#[derive(Debug, Clone)]
pub enum Outcome {
    Hit {
        key: StageKey,
        dir: PathBuf,
        /// Downloaded from the remote cache in this run, not found locally.
        remote: bool,
    },
    Ran {
        key: StageKey,
        dir: PathBuf,
        duration: Duration,
    },
    Failed {
        error: String,
    },
    /// Not started because an upstream stage failed or was cancelled.
    Skipped {
        because: String,
    },
    Cancelled,
}

impl Outcome {
    /// The status word reports and locks show: `hit`, `ran`, `failed`, `skipped`, `cancelled`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Hit { .. } => "hit",
            Outcome::Ran { .. } => "ran",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Hit { .. } | Outcome::Ran { .. })
    }
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Outcome::Hit { dir, .. } | Outcome::Ran { dir, .. } => Some(dir),
            _ => None,
        }
    }
}

/// Progress, for the CLI to render.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        stage: String,
        key: StageKey,
    },
    /// Another process holds the stage's lock; about to block.
    Waiting {
        stage: String,
        key: StageKey,
    },
    Finished {
        stage: String,
        outcome: Outcome,
        elapsed: Duration,
    },
    /// A started stage continues a lower-budget entry of its family (`cache::family`).
    WarmStart {
        stage: String,
        key: StageKey,
        from: WarmStartRecord,
    },
    /// A running stage wrote a save point (`StageCx::saved`); its live files are in `dir`.
    Saved {
        stage: String,
        key: StageKey,
        dir: PathBuf,
    },
}

pub struct ExecuteOptions<'a> {
    pub run: &'a RunOptions,
    pub jobs: usize,
    pub cancel: Arc<AtomicBool>,
    pub runs_dir: PathBuf,
    /// Recorded in manifests.
    pub tool_version: String,
    /// The remote cache: read through on a local miss, and pushed to when it allows
    /// (`Remote::pushes`). Never part of a key.
    pub remote: Option<&'a crate::cache::remote::Remote>,
}

#[derive(Debug, Default)]
pub struct RunReport {
    /// In plan order.
    pub results: Vec<(String, Outcome)>,
}

impl RunReport {
    pub fn all_succeeded(&self) -> bool {
        self.results.iter().all(|(_, o)| o.succeeded())
    }
    pub fn cancelled(&self) -> bool {
        self.results
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Cancelled))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Done(bool),
}

/// Runs the plan of one experiment. Never panics on a stage's panic; returns every stage's
/// outcome.
pub fn execute(
    exp: &Experiment,
    plan: &Plan,
    store: &CacheStore,
    options: &ExecuteOptions<'_>,
    on_event: &(dyn Fn(&Event) + Sync),
) -> RunReport {
    execute_variants(&[exp], plan, store, options, on_event)
}

/// Runs a plan whose nodes refer to several experiments (a sweep's variants, by
/// `PlannedStage::variant`): each node runs once and is linked at every `links` path.
pub fn execute_variants(
    exps: &[&Experiment],
    plan: &Plan,
    store: &CacheStore,
    options: &ExecuteOptions<'_>,
    on_event: &(dyn Fn(&Event) + Sync),
) -> RunReport {
    let n = plan.stages.len();
    let mut state = vec![State::Pending; n];
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let jobs = options.jobs.max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
        let mut running = 0usize;
        let mut accelerator_busy = false;
        loop {
            let cancelled = options.cancel.load(Ordering::Relaxed);
            for i in 0..n {
                if state[i] != State::Pending {
                    continue;
                }
                let ps = &plan.stages[i];
                if cancelled {
                    state[i] = State::Done(false);
                    outcomes[i] = Some(Outcome::Cancelled);
                    continue;
                }
                if let Some(&bad) = ps.deps.iter().find(|&&d| state[d] == State::Done(false)) {
                    let because = format!("upstream `{}` did not complete", plan.stages[bad].name);
                    on_event(&Event::Finished {
                        stage: ps.name.clone(),
                        outcome: Outcome::Skipped {
                            because: because.clone(),
                        },
                        elapsed: Duration::ZERO,
                    });
                    state[i] = State::Done(false);
                    outcomes[i] = Some(Outcome::Skipped { because });
                    continue;
                }
                let ready = ps.deps.iter().all(|&d| state[d] == State::Done(true));
                if !ready || running >= jobs || (ps.uses_accelerator && accelerator_busy) {
                    continue;
                }
                state[i] = State::Running;
                running += 1;
                accelerator_busy |= ps.uses_accelerator;
                let tx = tx.clone();
                scope.spawn(move || {
                    let started = Instant::now();
                    let outcome = match exps.get(ps.variant) {
                        Some(exp) => run_stage(exp, ps, store, options, on_event),
                        None => Outcome::Failed {
                            error: "internal error: plan refers to an unknown variant".into(),
                        },
                    };
                    on_event(&Event::Finished {
                        stage: ps.name.clone(),
                        outcome: outcome.clone(),
                        elapsed: started.elapsed(),
                    });
                    let _ = tx.send((i, outcome));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((i, outcome)) = rx.recv() else { break };
            running -= 1;
            if plan.stages[i].uses_accelerator {
                accelerator_busy = false;
            }
            state[i] = State::Done(outcome.succeeded());
            outcomes[i] = Some(outcome);
        }
    });
    RunReport {
        results: plan
            .stages
            .iter()
            .zip(outcomes)
            .map(|(ps, o)| (ps.name.clone(), o.unwrap_or(Outcome::Cancelled)))
            .collect(),
    }
}

fn run_stage(
    exp: &Experiment,
    ps: &PlannedStage,
    store: &CacheStore,
    options: &ExecuteOptions<'_>,
    on_event: &(dyn Fn(&Event) + Sync),
) -> Outcome {
    let failed = |e: &dyn std::fmt::Display| Outcome::Failed {
        error: e.to_string(),
    };
    let on_wait = || {
        on_event(&Event::Waiting {
            stage: ps.name.clone(),
            key: ps.key.clone(),
        })
    };
    let lookup = if ps.forced {
        store.lock(&ps.key, on_wait).map(Lookup::Miss)
    } else {
        store.lookup(&ps.key, on_wait)
    };
    let lock = match lookup {
        Ok(Lookup::Hit(artifact, _reading)) => {
            // `_reading` (a shared lock) keeps `gc` off the entry until it is linked.
            if let Err(e) = link_all(store, ps, options) {
                return failed(&e);
            }
            if let Some(remote) = options.remote.filter(|r| r.pushes()) {
                push_entry(remote, &artifact, &ps.name);
            }
            return Outcome::Hit {
                key: ps.key.clone(),
                dir: artifact.dir,
                remote: false,
            };
        }
        Ok(Lookup::Miss(lock)) => lock,
        Err(e) => return failed(&e),
    };
    if options.cancel.load(Ordering::Relaxed) {
        return Outcome::Cancelled;
    }
    let mut pending = match store.begin(lock) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    // A local miss is read through the remote (never for `--force`): a verified download
    // committed like a computed entry, or, refused or absent, computed here.
    if let Some(remote) = options.remote.filter(|_| !ps.forced) {
        match remote.pull_pending(store, pending, &ps.name) {
            Ok(Pulled::Committed(artifact)) => {
                if let Err(e) = link_all(store, ps, options) {
                    return failed(&e);
                }
                return Outcome::Hit {
                    key: ps.key.clone(),
                    dir: artifact.dir,
                    remote: true,
                };
            }
            Ok(Pulled::Absent(p)) => pending = p,
            Ok(Pulled::Refused(p, e)) => {
                if options.cancel.load(Ordering::Relaxed) {
                    return Outcome::Cancelled;
                }
                tracing::warn!(
                    "stage `{}`: the remote's entry (key {}…) was not used: {e}; computing it here",
                    ps.name,
                    ps.key.short()
                );
                pending = p;
            }
            Err(e) => return failed(&e),
        }
    }
    on_event(&Event::Started {
        stage: ps.name.clone(),
        key: ps.key.clone(),
    });
    // Shared locks on the upstream entries while the stage reads them, so `gc` cannot delete
    // one meanwhile; each is checked again under its lock.
    let mut _reading_upstream = Vec::new();
    for up in ps.upstream.values() {
        match store.read_lock(&up.key) {
            Ok(guard) => _reading_upstream.push(guard),
            Err(e) => return failed(&e),
        }
        if store.get(&up.key).is_none() {
            return Outcome::Failed {
                error: format!(
                    "the entry of upstream stage `{}` (key {}…) is gone or damaged; rerun to recompute it",
                    up.stage,
                    up.key.short()
                ),
            };
        }
    }
    let warm_start_from = warm_start(exp, ps, store, &pending.partial_dir, on_event);
    let spec = &exp.stages[ps.index];
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let mut cx = StageCx::new(
        &ps.name,
        pending.tmp_dir.clone(),
        pending.partial_dir.clone(),
        ps.inputs.clone(),
        exp.seed,
        options.run,
        options.cancel.clone(),
    );
    let on_save = |dir: &Path| {
        on_event(&Event::Saved {
            stage: ps.name.clone(),
            key: ps.key.clone(),
            dir: dir.to_path_buf(),
        })
    };
    cx.on_save = Some(&on_save);
    let result = catch_unwind(AssertUnwindSafe(|| spec.kind.run(&spec.params, &mut cx)));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if options.cancel.load(Ordering::Relaxed) {
                return Outcome::Cancelled;
            }
            return Outcome::Failed {
                error: format!("{e:#}"),
            };
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_owned());
            return Outcome::Failed {
                error: format!("panicked: {message}"),
            };
        }
    }
    let duration = clock.elapsed();
    let manifest = Manifest {
        manifest_format: MANIFEST_FORMAT,
        key: ps.key.clone(),
        stage: spec.name.clone(),
        experiment: exp.runs_subdir().to_string_lossy().into_owned(),
        kind: ps.kind.clone(),
        kind_version: ps.preimage.kind_version,
        params: ps.preimage.params.clone(),
        preimage: ps.preimage.clone(),
        upstream: ps.upstream.clone(),
        inputs: ps.input_records.clone(),
        overrides: exp.overrides.clone(),
        outputs: Vec::new(),
        started_at: rfc3339(started_at),
        finished_at: rfc3339(SystemTime::now()),
        duration_s: duration.as_secs_f64(),
        tool_version: options.tool_version.clone(),
        device: options.run.device.clone(),
        threads: options.run.threads,
        notes: cx.notes().clone(),
        family: ps.family.clone(),
        warm_start_from,
    };
    let artifact = match store.commit(pending, manifest) {
        Ok(a) => a,
        Err(e) => return failed(&e),
    };
    if let Err(e) = link_all(store, ps, options) {
        return failed(&e);
    }
    if let Some(remote) = options.remote.filter(|r| r.pushes()) {
        push_entry(remote, &artifact, &ps.name);
    }
    Outcome::Ran {
        key: ps.key.clone(),
        dir: artifact.dir,
        duration,
    }
}

/// Pushes a committed entry after a run computed or found it, saying what happened. A failed
/// push leaves the local entry as it is (the run's result stands) and is logged as an error.
fn push_entry(remote: &Remote, artifact: &crate::cache::Artifact, stage: &str) {
    match remote.push(artifact, stage) {
        Ok(PushOutcome::Uploaded { blobs, bytes }) => tracing::info!(
            "stage `{stage}` pushed to {} ({blobs} new files, {bytes} bytes)",
            remote.url()
        ),
        Ok(PushOutcome::AlreadyThere) => {
            tracing::debug!("stage `{stage}`: the remote has this entry already")
        }
        Ok(PushOutcome::Differs(diffs)) => tracing::warn!(
            "stage `{stage}` is not deterministic: the remote already has key {}… with different outputs ({}); the remote's entry is kept",
            artifact.key.short(),
            diffs.join("; ")
        ),
        Err(e) => tracing::error!("stage `{stage}`: push to {} failed: {e}", remote.url()),
    }
}

fn link_all(
    store: &CacheStore,
    ps: &PlannedStage,
    options: &ExecuteOptions<'_>,
) -> Result<(), StoreError> {
    for link in &ps.links {
        store.link_at(&options.runs_dir, link, &ps.key)?;
    }
    Ok(())
}
