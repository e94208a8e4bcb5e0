//! `vaepipe cache push [FILE]`, `vaepipe cache pull FILE` and `vaepipe cache verify --remote`:
//! the remote cache by hand (`cache::remote` holds the layout and the promises). The remote is
//! `--remote`/`VAEPIPE_REMOTE`, else FILE's `[cache] remote`.
//!
//! `--recompute N` picks N of the audited entries at random and computes each again in a
//! scratch cache from its manifest alone (kind, params, seed; upstream entries pulled from the
//! remote; external inputs must be on this machine with the digest the manifest recorded),
//! then compares the outputs' blake3: the audit that a shared cache was not poisoned.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::gc::human_bytes;
use super::{CliError, GlobalArgs, SweepArgs};
use crate::cache::remote::{audit, PullOutcome, PushOutcome, Remote, RemoteError};
use crate::cache::{CacheStore, Manifest, StageKey};
use crate::registry::Registry;
use crate::stage::{RunOptions, StageCx};

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Push this experiment's entries [default: every entry of the local cache].
    pub file: Option<PathBuf>,
    /// Override a param (changes keys, as for `run`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// `cache pull FILE [--set ...] [--sweep ...]`: the same arguments as `status`.
pub type PullArgs = super::slurm::StatusArgs;

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// With `--remote`: check N random entries instead of all.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// With `--remote`: recompute N random checked entries here and compare their outputs.
    #[arg(long, value_name = "N")]
    pub recompute: Option<usize>,
    /// With `--remote`: the seed of the random choices [default: from the clock; printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// With `--recompute`: `cpu`, `cuda`, ... for the recomputation [default: cpu].
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `--remote`, else the experiment's `[cache] remote`; an error when neither names one.
fn open_remote(
    global: &GlobalArgs,
    exp: Option<&crate::config::Experiment>,
) -> Result<Remote, CliError> {
    super::remote_for(global, exp)?.ok_or_else(|| {
        CliError::Usage(
            "no remote cache given\n  help: pass `--remote s3://BUCKET/PREFIX` (or set VAEPIPE_REMOTE, or `[cache] remote` in the experiment)".into(),
        )
    })
}

/// An experiment, its local cache, and its plan's (stage name, key), upstream first.
type Planned = (crate::config::Sweep, CacheStore, Vec<(String, StageKey)>);

/// The keys (with stage names) an experiment's plan has, upstream first.
fn planned_keys(
    file: &std::path::Path,
    registry: &Registry,
    set: &[String],
    sweep: &SweepArgs,
    global: &GlobalArgs,
) -> Result<Planned, CliError> {
    let (sweep, store, plan) = super::plan_file(file, registry, set, sweep, global)?;
    let keys = plan
        .plan
        .stages
        .iter()
        .map(|ps| (ps.name.clone(), ps.key.clone()))
        .collect();
    Ok((sweep, store, keys))
}

pub fn push(args: PushArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let started = Instant::now();
    let (remote, store, keys) = match &args.file {
        Some(file) => {
            let (sweep, store, keys) =
                planned_keys(file, registry, &args.set, &args.sweep, global)?;
            (open_remote(global, Some(&sweep.base))?, store, keys)
        }
        None => {
            let store = CacheStore::open_existing(&super::cache_dir(global, None))?;
            let keys = local_keys(&store)
                .into_iter()
                .map(|k| (format!("entry {}…", k.short()), k))
                .collect();
            (open_remote(global, None)?, store, keys)
        }
    };
    let (mut sent_bytes, mut failed, mut differs, mut missing) = (0u64, 0, 0, 0);
    for (name, key) in &keys {
        let Some(artifact) = store.get(key) else {
            println!("{name}: not in the local cache (run it first)");
            missing += 1;
            continue;
        };
        match remote.push(&artifact, name) {
            Ok(PushOutcome::Uploaded { blobs, bytes }) => {
                sent_bytes += bytes;
                println!("{name}: pushed ({blobs} new files, {})", human_bytes(bytes));
            }
            Ok(PushOutcome::AlreadyThere) => println!("{name}: already on the remote"),
            Ok(PushOutcome::Differs(diffs)) => {
                differs += 1;
                println!(
                    "{name}: NOT DETERMINISTIC: the remote has key {}… with other outputs; kept the remote's",
                    key.short()
                );
                for d in diffs {
                    println!("  {d}");
                }
            }
            Err(e) => count_failure(name, e, &mut failed)?,
        }
    }
    println!(
        "{}",
        transfer_summary("pushed", keys.len(), sent_bytes, started.elapsed())
    );
    if failed + differs > 0 {
        return Err(CliError::Failed(format!(
            "{failed} push(es) failed, {differs} entr(ies) differ from the remote's (nondeterminism)"
        )));
    }
    if missing > 0 && args.file.is_some() {
        tracing::warn!("{missing} stage(s) have no local entry to push; run the experiment first");
    }
    Ok(())
}

pub fn pull(args: PullArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let started = Instant::now();
    let (sweep, store, keys) = planned_keys(&args.file, registry, &args.set, &args.sweep, global)?;
    let remote = open_remote(global, Some(&sweep.base))?;
    let (mut bytes, mut failed, mut absent) = (0u64, 0, 0);
    for (name, key) in &keys {
        match remote.pull(&store, key, name) {
            Ok(PullOutcome::Local) => println!("{name}: already in the local cache"),
            Ok(PullOutcome::Pulled(a)) => {
                let size: u64 = a.manifest.outputs.iter().map(|o| o.size).sum();
                bytes += size;
                println!("{name}: pulled ({})", human_bytes(size));
            }
            Ok(PullOutcome::Absent) => {
                absent += 1;
                println!("{name}: not on the remote");
            }
            Err(e) => count_failure(name, e, &mut failed)?,
        }
    }
    println!(
        "{}",
        transfer_summary("pulled", keys.len(), bytes, started.elapsed())
    );
    if absent > 0 {
        println!("{absent} stage(s) are not on the remote; `vaepipe run` computes them");
    }
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} entr(ies) could not be pulled (see above); a run recomputes them"
        )));
    }
    Ok(())
}

pub fn verify(args: VerifyArgs, global: &GlobalArgs, registry: &Registry) -> Result<(), CliError> {
    let remote = open_remote(global, None)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let keys = remote.keys()?;
    let chosen = audit::sample(&keys, args.sample, seed);
    if args.sample.is_some() || args.recompute.is_some() {
        println!("seed {seed} (rerun with --seed {seed} to check the same entries)");
    }
    let report = remote.audit(&chosen)?;
    for p in &report.problems {
        println!("  {p}");
    }
    println!(
        "checked {} of {} remote entries, {} blobs ({}), {} problem(s)",
        report.entries,
        keys.len(),
        report.blobs,
        human_bytes(report.bytes),
        report.problems.len()
    );
    let mut bad = report.problems.len();
    if let Some(n) = args.recompute {
        let picked = audit::sample(&report.manifests, Some(n), seed ^ 0x5EED);
        let store = CacheStore::open(&super::cache_dir(global, None))?;
        for m in &picked {
            match recompute(&remote, &store, registry, m, &args.device) {
                Ok(diffs) if diffs.is_empty() => {
                    println!("recomputed {} ({}…): same outputs", m.stage, m.key.short())
                }
                Ok(diffs) => {
                    bad += 1;
                    println!(
                        "recomputed {} ({}…): DIFFERENT outputs from the remote's:",
                        m.stage,
                        m.key.short()
                    );
                    for d in diffs {
                        println!("  {d}");
                    }
                }
                Err(why) => println!(
                    "could not recompute {} ({}…): {why}",
                    m.stage,
                    m.key.short()
                ),
            }
        }
    }
    if bad > 0 {
        return Err(CliError::Failed(format!(
            "the remote cache failed {bad} check(s) (see above)"
        )));
    }
    Ok(())
}

/// A transfer that failed: an interruption stops the verb; anything else is printed and
/// counted, and the verb goes on with the next entry.
fn count_failure(name: &str, e: RemoteError, failed: &mut usize) -> Result<(), CliError> {
    if matches!(e, RemoteError::Interrupted) {
        return Err(CliError::Interrupted);
    }
    *failed += 1;
    eprintln!("error: {name}: {e}");
    Ok(())
}

/// `pushed 6 entries, 1.2 MiB in 0.31s (3.9 MiB/s)`.
fn transfer_summary(
    verb: &str,
    entries: usize,
    bytes: u64,
    elapsed: std::time::Duration,
) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        (bytes as f64 / secs) as u64
    } else {
        0
    };
    format!(
        "{verb} {entries} entr{}, {} in {secs:.2}s ({}/s)",
        if entries == 1 { "y" } else { "ies" },
        human_bytes(bytes),
        human_bytes(rate)
    )
}

/// The keys of the committed entries in `store`.
fn local_keys(store: &CacheStore) -> Vec<StageKey> {
    let mut keys: Vec<StageKey> = std::fs::read_dir(store.entries_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| StageKey::parse(&e.file_name().to_string_lossy()))
        .collect();
    keys.sort();
    keys
}

/// Computes `m`'s entry again in a scratch cache under `store` and returns how its outputs
/// differ from `m`'s; `Err` says why it could not be recomputed here.
fn recompute(
    remote: &Remote,
    store: &CacheStore,
    registry: &Registry,
    m: &Manifest,
    device: &str,
) -> Result<Vec<String>, String> {
    let kind = registry
        .get(&m.kind)
        .ok_or_else(|| format!("this binary has no stage kind `{}`", m.kind))?;
    if kind.version() != m.kind_version {
        return Err(format!(
            "kind `{}` is version {} here, {} in the entry",
            m.kind,
            kind.version(),
            m.kind_version
        ));
    }
    let params = kind.params_from_json(m.params.clone())?;
    let scratch_dir = store.root().join("tmp").join(format!(
        "recompute-{}-{}",
        m.key.short(),
        std::process::id()
    ));
    let scratch = CacheStore::open(&scratch_dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let mut inputs = BTreeMap::new();
        for (role, up) in &m.upstream {
            match remote
                .pull(&scratch, &up.key, &up.stage)
                .map_err(|e| e.to_string())?
            {
                PullOutcome::Absent => {
                    return Err(format!("its upstream `{}` is not on the remote", up.stage))
                }
                PullOutcome::Local | PullOutcome::Pulled(_) => {}
            }
            let dir = scratch.entry_dir(&up.key);
            let path = if up.subpath.is_empty() {
                dir
            } else {
                dir.join(&up.subpath)
            };
            inputs.insert(role.clone(), path);
        }
        for (role, input) in &m.inputs {
            let mode: crate::cache::FingerprintMode =
                serde_json::from_value(serde_json::Value::String(input.mode.clone()))
                    .map_err(|e| e.to_string())?;
            let path = PathBuf::from(&input.path);
            let fp = crate::cache::fingerprint::fingerprint(&path, mode)
                .map_err(|e| format!("input `{}` is not on this machine ({e})", input.input))?;
            if fp.digest != input.digest {
                return Err(format!(
                    "input `{}` at `{}` differs here from the one the entry was computed from",
                    input.input, input.path
                ));
            }
            inputs.insert(role.clone(), path);
        }
        let lock = scratch.lock(&m.key, || {}).map_err(|e| e.to_string())?;
        let pending = scratch.begin(lock).map_err(|e| e.to_string())?;
        let run = RunOptions {
            device: device.to_owned(),
            threads: m.threads,
            quiet: true,
        };
        let mut cx = StageCx::new(
            &m.stage,
            pending.tmp_dir.clone(),
            pending.partial_dir.clone(),
            inputs,
            m.preimage.seed,
            &run,
            crate::signal::cancel_flag(),
        );
        kind.run(&params, &mut cx)
            .map_err(|e| format!("it failed: {e:#}"))?;
        let ours = scratch
            .commit(pending, m.clone())
            .map_err(|e| e.to_string())?;
        Ok(crate::cache::remote::output_differences(&ours.manifest, m))
    })();
    let _ = crate::cache::store::remove_tree(&scratch_dir);
    result
}
