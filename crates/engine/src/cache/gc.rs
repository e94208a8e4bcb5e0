//! Cache maintenance: `gc` (delete what no `runs/` link points at) and `verify` (re-hash entries
//! and name the tampered or truncated ones).
//!
//! `gc`'s roots are the files in `<cache>/roots/`, each holding the absolute path of a
//! `runs/<experiment>/<stage>` link written by a run; a root whose link is gone or points
//! elsewhere is dropped. Entries are deleted only while their per-key lock can be taken, so an
//! entry being (re)computed is never pulled from under a run. Partial dirs of keys that are not
//! committed are kept (they are resumable work); temp dirs of finished or dead runs are removed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::key::StageKey;
use super::manifest::{Manifest, MANIFEST_FILE};
use super::store::{dir_size, hash_outputs, CacheStore, StoreError};

#[derive(Debug, Default)]
pub struct GcReport {
    /// What was (or, in a dry run, would be) deleted, with its size in bytes.
    pub removed: Vec<(PathBuf, u64)>,
    pub kept_entries: usize,
    pub bytes_freed: u64,
    pub dry_run: bool,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Keys that some `runs/` link points at; drops stale roots (unless `dry_run`).
pub fn live_keys(store: &CacheStore, dry_run: bool) -> Result<BTreeSet<StageKey>, StoreError> {
    let roots = store.root().join("roots");
    let mut live = BTreeSet::new();
    for entry in fs::read_dir(&roots).map_err(io("read", &roots))? {
        let entry = entry.map_err(io("read", &roots))?;
        let link = fs::read_to_string(entry.path()).map(PathBuf::from).ok();
        match link.and_then(|l| store.linked_key(&l)) {
            Some(key) => {
                live.insert(key);
            }
            None if !dry_run => {
                let _ = fs::remove_file(entry.path());
            }
            None => {}
        }
    }
    Ok(live)
}

pub fn gc(store: &CacheStore, dry_run: bool) -> Result<GcReport, StoreError> {
    let live = live_keys(store, dry_run)?;
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let mut kept_digests = BTreeSet::new();
    let entries = store.entries_dir();
    for entry in fs::read_dir(&entries).map_err(io("read", &entries))? {
        let entry = entry.map_err(io("read", &entries))?;
        let path = entry.path();
        let key = entry.file_name().to_str().and_then(StageKey::parse);
        if let Some(key) = key.as_ref().filter(|k| live.contains(*k)) {
            if let Some(m) = Manifest::read(&path, Some(key)) {
                kept_digests.extend(m.preimage.inputs.values().map(|i| i.digest.clone()));
            }
            report.kept_entries += 1;
            continue;
        }
        let _guard = match &key {
            Some(k) => match store.try_lock(k)? {
                Some(g) => Some(g),
                None => {
                    report.kept_entries += 1; // a run holds it right now
                    continue;
                }
            },
            None => None,
        };
        remove(&path, dry_run, &mut report)?;
    }
    // Temp dirs: those whose key lock is free belong to finished or dead runs.
    let tmp = store.root().join("tmp");
    for entry in fs::read_dir(&tmp).map_err(io("read", &tmp))? {
        let entry = entry.map_err(io("read", &tmp))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = name.split('.').next().and_then(StageKey::parse);
        let _guard = match &key {
            Some(k) => match store.try_lock(k)? {
                Some(g) => g,
                None => continue,
            },
            None => continue,
        };
        remove(&entry.path(), dry_run, &mut report)?;
    }
    // Partial dirs of committed keys (left by a crash between commit and cleanup).
    let partial = store.root().join("partial");
    for entry in fs::read_dir(&partial).map_err(io("read", &partial))? {
        let entry = entry.map_err(io("read", &partial))?;
        if let Some(key) = entry.file_name().to_str().and_then(StageKey::parse) {
            if store.get(&key).is_some() {
                remove(&entry.path(), dry_run, &mut report)?;
            }
        }
    }
    // Input listings no kept entry refers to.
    let fps = store.root().join("fingerprints");
    for entry in fs::read_dir(&fps).map_err(io("read", &fps))? {
        let entry = entry.map_err(io("read", &fps))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let digest = name.trim_end_matches(".tsv");
        if !kept_digests.contains(digest) {
            remove(&entry.path(), dry_run, &mut report)?;
        }
    }
    Ok(report)
}

fn remove(path: &Path, dry_run: bool, report: &mut GcReport) -> Result<(), StoreError> {
    let size = dir_size(path);
    if !dry_run {
        let meta = fs::symlink_metadata(path).map_err(io("read", path))?;
        if meta.is_dir() {
            fs::remove_dir_all(path).map_err(io("delete", path))?;
        } else {
            fs::remove_file(path).map_err(io("delete", path))?;
        }
    }
    report.bytes_freed += size;
    report.removed.push((path.to_path_buf(), size));
    Ok(())
}

/// One damaged entry found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    pub key: String,
    pub stage: Option<String>,
    pub problems: Vec<String>,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    pub damaged: Vec<VerifyProblem>,
}

/// Re-hashes every committed entry's files against its manifest.
pub fn verify(store: &CacheStore) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let entries = store.entries_dir();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&entries)
        .map_err(io("read", &entries))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        report.checked += 1;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(key) = StageKey::parse(&name) else {
            report.damaged.push(VerifyProblem {
                key: name,
                stage: None,
                problems: vec!["not a cache entry name".into()],
            });
            continue;
        };
        let Some(manifest) = Manifest::read(&dir, Some(&key)) else {
            let why = if dir.join(MANIFEST_FILE).exists() {
                "manifest.json is unreadable or does not match the entry's key"
            } else {
                "manifest.json is missing"
            };
            report.damaged.push(VerifyProblem {
                key: name,
                stage: None,
                problems: vec![why.into()],
            });
            continue;
        };
        let mut problems = Vec::new();
        let actual = hash_outputs(&dir)?;
        let actual: Vec<_> = actual
            .into_iter()
            .filter(|f| f.path != MANIFEST_FILE)
            .collect();
        for want in &manifest.outputs {
            match actual.iter().find(|f| f.path == want.path) {
                None => problems.push(format!("`{}` is missing", want.path)),
                Some(got) if got.size != want.size => problems.push(format!(
                    "`{}` was truncated or grew: {} → {} bytes",
                    want.path, want.size, got.size
                )),
                Some(got) if got.blake3 != want.blake3 => {
                    problems.push(format!("`{}` was modified (blake3 differs)", want.path))
                }
                Some(_) => {}
            }
        }
        for got in &actual {
            if !manifest.outputs.iter().any(|w| w.path == got.path) {
                problems.push(format!(
                    "`{}` was added after the entry was committed",
                    got.path
                ));
            }
        }
        if !problems.is_empty() {
            report.damaged.push(VerifyProblem {
                key: name,
                stage: Some(manifest.stage.clone()),
                problems,
            });
        }
    }
    Ok(report)
}
