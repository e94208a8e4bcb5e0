//! Families and warm starts: finding the committed entry a longer run can continue.
//!
//! A kind that declares an extendable budget param (`Stage::extendable_budget`, train-vae's
//! `max_steps`) gives each of its keys a *family*: the blake3 of the key preimage with that one
//! param removed (plus the param's name and [`FAMILY_FORMAT`]). Two entries of one family differ
//! only in their budget, so when a key misses, the entry of its family with the largest budget
//! below the requested one is a checkpoint the stage can resume from instead of starting at
//! zero; the result is the from-scratch result, so it is committed under the from-scratch key,
//! and its manifest says `warm_start_from`.
//!
//! # Files on disk
//!
//! - `<cache>/families/<family>.tsv`: one `<budget>\t<key>` line per committed entry of the
//!   family, appended at commit (one `O_APPEND` write, so concurrent commits never tear each
//!   other's lines). Finding a source reads this one file, never every manifest; each line
//!   is then checked like a hit (valid manifest, outputs' size and mtime), re-derived (its
//!   preimage minus the budget must hash to this family) and, before it is used, re-hashed
//!   (every output's blake3), so a stale, forged or damaged line is skipped, never used.
//! - `<cache>/partial/<key>.warm.json`: which entry a warm-started, not yet committed run was
//!   seeded from, so a rerun after a kill (which resumes from the partial dir) still records
//!   `warm_start_from`; removed at commit.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::key::{write_canonical, KeyPreimage, StageKey};
use super::store::{remove_tree, Artifact, CacheStore, EntryReadLock};

/// Bumped whenever the family preimage's encoding changes.
pub const FAMILY_FORMAT: u32 = 1;

/// The longest index file read (its newest part): a family gains one line per commit.
const INDEX_READ_LIMIT: u64 = 1 << 20;

/// A family's identity: 64 hex digits of blake3.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FamilyKey(String);

impl FamilyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An extendable stage's family and its place in it (recorded in its manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub key: FamilyKey,
    /// The budget param (`max_steps`), as the kind declares it.
    pub budget_param: String,
    /// This key's value of it.
    pub budget: u64,
}

/// The entry a warm-started result continued (recorded in its manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmStartRecord {
    pub key: StageKey,
    pub budget_param: String,
    pub budget: u64,
}

impl WarmStartRecord {
    /// `warm start from 1a2b3c4d5e6f (max_steps 400)`.
    pub fn present(&self) -> String {
        format!(
            "warm start from {} ({} {})",
            self.key.short(),
            self.budget_param,
            self.budget
        )
    }
}

/// The family of a preimage whose kind declares `budget_param` extendable; `None` when the
/// resolved params have no such unsigned integer param (the stage is then never warm-started).
pub fn family_of(preimage: &KeyPreimage, budget_param: &str) -> Option<FamilyRecord> {
    let mut rest = serde_json::to_value(preimage).ok()?;
    let params = rest.get_mut("params")?.as_object_mut()?;
    let budget = params.remove(budget_param)?.as_u64()?;
    let identity = serde_json::json!({
        "family_format": FAMILY_FORMAT,
        "budget_param": budget_param,
        "preimage_without_budget": rest,
    });
    let mut text = String::new();
    write_canonical(&identity, &mut text);
    Some(FamilyRecord {
        key: FamilyKey(blake3::hash(text.as_bytes()).to_hex().to_string()),
        budget_param: budget_param.to_owned(),
        budget,
    })
}

fn index_path(store: &CacheStore, family: &FamilyKey) -> PathBuf {
    store
        .root()
        .join("families")
        .join(format!("{}.tsv", family.as_str()))
}

/// Adds a committed entry to its family's index (called by `CacheStore::commit`).
pub(crate) fn record(store: &CacheStore, family: &FamilyRecord, key: &StageKey) -> io::Result<()> {
    let path = index_path(store, &family.key);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    // One write of one short line: appends by concurrent commits stay whole.
    file.write_all(format!("{}\t{key}\n", family.budget).as_bytes())
}

/// The index's (budget, key) pairs, largest budget first; torn or foreign lines are skipped.
fn indexed(store: &CacheStore, family: &FamilyKey) -> Vec<(u64, StageKey)> {
    let mut text = String::new();
    let read = fs::File::open(index_path(store, family)).and_then(|mut f| {
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(INDEX_READ_LIMIT)))?;
        f.take(INDEX_READ_LIMIT).read_to_string(&mut text)
    });
    if read.is_err() {
        return Vec::new();
    }
    let mut found: Vec<(u64, StageKey)> = text
        .lines()
        .filter_map(|line| {
            let (budget, key) = line.split_once('\t')?;
            Some((budget.parse().ok()?, StageKey::parse(key)?))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.dedup();
    found
}

/// A committed entry to warm-start from, held under a shared lock so `gc` leaves it alone.
pub struct WarmCandidate {
    pub artifact: Artifact,
    pub record: WarmStartRecord,
    _reading: EntryReadLock,
}

/// How thoroughly [`find_source`] checks a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCheck {
    /// As a hit is checked: valid manifest, outputs' size and mtime (for `plan`).
    Stat,
    /// And every output re-hashed against the manifest (before a run uses it).
    Rehash,
}

/// The committed entry of `family` with the largest budget below `family.budget` that passes
/// `check`; `None` when there is none. Candidates that fail are skipped with a warning.
pub fn find_source(
    store: &CacheStore,
    family: &FamilyRecord,
    check: SourceCheck,
) -> Option<WarmCandidate> {
    for (budget, key) in indexed(store, &family.key) {
        if budget >= family.budget {
            continue;
        }
        // A key someone is writing (or `gc` deleting) right now is not waited for.
        let Ok(Some(reading)) = store.try_read_lock(&key) else {
            continue;
        };
        let Some(artifact) = store.get(&key) else {
            continue;
        };
        let same_family = family_of(&artifact.manifest.preimage, &family.budget_param)
            .is_some_and(|f| f.key == family.key && f.budget == budget);
        if !same_family {
            continue;
        }
        if check == SourceCheck::Rehash {
            let problems = super::store::rehash_problems(&artifact.dir, &artifact.manifest);
            if !problems.is_empty() {
                tracing::warn!(
                    "cache entry {}… (stage `{}`) is damaged ({}); it is not used for a warm start",
                    key.short(),
                    artifact.manifest.stage,
                    problems.join("; ")
                );
                continue;
            }
        }
        return Some(WarmCandidate {
            record: WarmStartRecord {
                key,
                budget_param: family.budget_param.clone(),
                budget,
            },
            artifact,
            _reading: reading,
        });
    }
    None
}

/// True when `dir` holds at least one file (below it, at any depth): a killed run's work, which
/// the stage resumes rather than being seeded over.
pub(crate) fn has_files(dir: &Path) -> bool {
    let Ok(listing) = fs::read_dir(dir) else {
        return false;
    };
    listing.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => has_files(&e.path()),
        Ok(_) => true,
        Err(_) => true,
    })
}

/// Fills `key`'s partial dir through `seed` (given a fresh temp dir on the cache's
/// filesystem), records `source` beside it, and renames it into place: a kill while seeding
/// leaves a temp dir (`gc` removes it), never a half-seeded partial dir. The copies are made
/// writable (an entry's files are read-only, and the stage appends to some of them).
pub(crate) fn seed_partial(
    store: &CacheStore,
    key: &StageKey,
    source: &WarmStartRecord,
    seed: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = store.tmp_path(key, "warm");
    let _ = remove_tree(&tmp);
    fs::create_dir_all(&tmp)?;
    let seeded = (|| -> anyhow::Result<()> {
        seed(&tmp)?;
        make_owner_writable(&tmp)?;
        write_marker(store, key, source)?;
        let partial = store.partial_dir(key);
        if partial.exists() {
            remove_tree(&partial)?; // empty dirs only: the caller checked `has_files`
        }
        fs::rename(&tmp, &partial)?;
        Ok(())
    })();
    if seeded.is_err() {
        let _ = remove_tree(&tmp);
    }
    seeded
}

/// Adds the owner's write bit to every file and directory under `dir`.
fn make_owner_writable(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut perms = meta.permissions();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            perms.set_mode(perms.mode() | 0o200);
        }
        #[cfg(not(unix))]
        perms.set_readonly(false);
        fs::set_permissions(entry.path(), perms)?;
        if meta.is_dir() {
            make_owner_writable(&entry.path())?;
        }
    }
    Ok(())
}

/// Where a seeded, uncommitted run records its source.
pub(crate) fn marker_path(store: &CacheStore, key: &StageKey) -> PathBuf {
    store
        .root()
        .join("partial")
        .join(format!("{key}.warm.json"))
}

pub(crate) fn write_marker(
    store: &CacheStore,
    key: &StageKey,
    record: &WarmStartRecord,
) -> io::Result<()> {
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    crate::atomic_file::write_atomic(&marker_path(store, key), &text)
}

pub(crate) fn read_marker(store: &CacheStore, key: &StageKey) -> Option<WarmStartRecord> {
    serde_json::from_slice(&fs::read(marker_path(store, key)).ok()?).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use crate::cache::key::KEY_FORMAT;
    use std::collections::BTreeMap;

    fn preimage(params: serde_json::Value) -> KeyPreimage {
        KeyPreimage {
            format: KEY_FORMAT,
            kind: "k".into(),
            kind_version: 1,
            params,
            seed: 1,
            upstream: BTreeMap::new(),
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn the_family_ignores_only_the_budget() {
        let short = preimage(serde_json::json!({"steps": 4, "lr": 0.5}));
        let long = preimage(serde_json::json!({"steps": 12, "lr": 0.5}));
        let other = preimage(serde_json::json!({"steps": 4, "lr": 0.25}));
        let (a, b, c) = (
            family_of(&short, "steps").unwrap(),
            family_of(&long, "steps").unwrap(),
            family_of(&other, "steps").unwrap(),
        );
        assert_eq!(a.key, b.key);
        assert_eq!((a.budget, b.budget), (4, 12));
        assert_ne!(a.key, c.key, "another lr is another family");
        assert_ne!(short.key(), long.key(), "the keys still differ");
        // The budget param's name is part of the family: `lr` as the budget is another one.
        assert!(
            family_of(&short, "lr").is_none(),
            "0.5 is not an unsigned integer"
        );
        assert!(family_of(&short, "missing").is_none());
    }

    #[test]
    fn the_index_skips_torn_lines_and_lists_largest_first() {
        let dir = crate::cache::store::test_dir();
        let store = CacheStore::open(dir.path()).unwrap();
        let f = family_of(&preimage(serde_json::json!({"steps": 9})), "steps").unwrap();
        let (k1, k2) = (
            preimage(serde_json::json!({"steps": 1})).key(),
            preimage(serde_json::json!({"steps": 3})).key(),
        );
        for (budget, key) in [(1, &k1), (3, &k2), (3, &k2)] {
            record(
                &store,
                &FamilyRecord {
                    budget,
                    ..f.clone()
                },
                key,
            )
            .unwrap();
        }
        let path = index_path(&store, &f.key);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("7\tnot-a-key\n12\t");
        fs::write(&path, text).unwrap();
        assert_eq!(indexed(&store, &f.key), vec![(3, k2), (1, k1)]);
    }
}
