//! Cache maintenance: `gc` (delete what no `runs/` link points at) and `verify` (re-hash entries
//! and name the tampered or truncated ones).
//!
//! `gc`'s roots are the files in `<cache>/roots/`, one per `runs/<experiment>/<stage>` link a run
//! made ([`RootRecord`]: the link's absolute path, its path from the cache root, and the key it
//! was made for). A root is dropped only when its link is *known* to be gone: its directory
//! can be read and the link is absent (or no longer points into this cache). A link that
//! cannot be checked (a directory that is unreadable, such as another user's `runs/`, or one
//! that no longer exists, such as a moved project's old path) keeps its root and its recorded
//! key. The links under `--runs-dir` are roots too, whatever `roots/` says. An entry nothing
//! links is deleted only once it is older than the grace age (`gc --older-than`, default
//! [`DEFAULT_GRACE`]), and only while its per-key lock can be taken, so an entry being
//! computed, linked or read is never pulled from under a run. Partial dirs of keys that are
//! not committed are kept (they are resumable work); temp dirs of finished or dead runs are
//! removed.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::key::StageKey;
use super::manifest::{Manifest, MANIFEST_FILE};
use super::store::{dir_size, rehash_problems, remove_tree, CacheStore, StoreError};

/// How old an unlinked entry must be before `gc` deletes it, unless `--older-than` says.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What `gc` does.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Print, delete nothing (roots included).
    pub dry_run: bool,
    /// Unlinked entries younger than this are kept.
    pub older_than: Duration,
    /// `runs/` directories whose links keep entries (scanned directly, besides `roots/`).
    pub runs_dirs: Vec<PathBuf>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            older_than: DEFAULT_GRACE,
            runs_dirs: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
pub struct GcReport {
    /// What was (or, in a dry run, would be) deleted, with its size in bytes.
    pub removed: Vec<(PathBuf, u64)>,
    pub kept_entries: usize,
    /// Unlinked entries kept because they are younger than the grace age.
    pub kept_young: usize,
    /// Roots whose link could not be checked, kept with their recorded key.
    pub unverified_roots: Vec<PathBuf>,
    pub bytes_freed: u64,
    pub dry_run: bool,
}

/// One file in `<cache>/roots/`: the link a run made. Lines: the link's absolute path, then
/// `from-cache <path>` (the link relative to the cache root, which still finds it after the
/// project moved with its cache) and `key <key>`. Files from before those lines hold only the
/// path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRecord {
    pub link: PathBuf,
    pub from_cache: Option<PathBuf>,
    pub key: Option<StageKey>,
}

impl RootRecord {
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n", self.link.display());
        if let Some(rel) = &self.from_cache {
            text.push_str(&format!("from-cache {}\n", rel.display()));
        }
        if let Some(key) = &self.key {
            text.push_str(&format!("key {key}\n"));
        }
        text
    }

    pub fn parse(text: &str) -> Option<RootRecord> {
        let mut lines = text.lines();
        let link = PathBuf::from(lines.next().filter(|l| !l.is_empty())?);
        let mut record = RootRecord {
            link,
            from_cache: None,
            key: None,
        };
        for line in lines {
            if let Some(rel) = line.strip_prefix("from-cache ") {
                record.from_cache = Some(PathBuf::from(rel));
            } else if let Some(key) = line.strip_prefix("key ") {
                record.key = StageKey::parse(key);
            }
        }
        Some(record)
    }
}

/// What a link path says about the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    /// A link into this cache's entries.
    Points(StageKey),
    /// Known gone: its directory is readable and the link is absent or points elsewhere.
    Gone,
    /// Cannot tell: its directory is unreadable or does not exist.
    Unknown,
}

fn link_state(store: &CacheStore, link: &Path) -> LinkState {
    if let Some(key) = store.linked_key(link) {
        return LinkState::Points(key);
    }
    let Some(parent) = link.parent() else {
        return LinkState::Unknown;
    };
    if fs::read_dir(parent).is_err() {
        return LinkState::Unknown;
    }
    match fs::symlink_metadata(link) {
        // Absent, or something that is not a link into this cache.
        Err(e) if e.kind() == io::ErrorKind::NotFound => LinkState::Gone,
        Err(_) => LinkState::Unknown,
        Ok(meta) if !meta.file_type().is_symlink() => LinkState::Gone,
        // A link whose target cannot be resolved right now (a cache on an unmounted disk) is not
        // known to point elsewhere.
        Ok(_) => match fs::read_link(link)
            .ok()
            .and_then(|t| fs::canonicalize(parent.join(t)).ok())
        {
            Some(_) => LinkState::Gone,
            None => LinkState::Unknown,
        },
    }
}

/// The links a `gc` keeps and the roots it could not check.
#[derive(Debug, Default)]
pub struct LiveSet {
    pub keys: BTreeSet<StageKey>,
    pub unverified: Vec<PathBuf>,
}

/// Keys that some `runs/` link points at (or may point at: see the module docs); drops the
/// roots whose link is known gone (unless `dry_run`).
pub fn live_keys(
    store: &CacheStore,
    runs_dirs: &[PathBuf],
    dry_run: bool,
) -> Result<LiveSet, StoreError> {
    let roots = store.root().join("roots");
    let mut live = LiveSet::default();
    for entry in fs::read_dir(&roots).map_err(io("read", &roots))? {
        let entry = entry.map_err(io("read", &roots))?;
        let Some(record) = fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| RootRecord::parse(&t))
        else {
            continue; // unreadable or empty: not ours to judge, and nothing to keep
        };
        let mut candidates = vec![record.link.clone()];
        if let Some(rel) = &record.from_cache {
            candidates.push(store.root().join(rel));
        }
        let states: Vec<LinkState> = candidates.iter().map(|l| link_state(store, l)).collect();
        let pointed: Vec<StageKey> = states
            .iter()
            .filter_map(|s| match s {
                LinkState::Points(k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        if !pointed.is_empty() {
            live.keys.extend(pointed);
        } else if states.iter().all(|s| *s == LinkState::Gone) {
            if !dry_run {
                let _ = fs::remove_file(entry.path());
            }
        } else {
            live.keys.extend(record.key.clone());
            live.unverified.push(record.link.clone());
        }
    }
    for dir in runs_dirs {
        scan_links(store, dir, 0, &mut live.keys);
    }
    Ok(live)
}

/// Every link under `dir` (not following links, a few levels deep: `<exp>/<variant>/<stage>`)
/// that points into the cache.
fn scan_links(store: &CacheStore, dir: &Path, depth: usize, keys: &mut BTreeSet<StageKey>) {
    const MAX_DEPTH: usize = 6;
    let Ok(listing) = fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            keys.extend(store.linked_key(&path));
        } else if meta.is_dir() && depth < MAX_DEPTH {
            scan_links(store, &path, depth + 1, keys);
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// An entry's age: since its manifest was written (its directory's mtime when it has none).
fn entry_age(dir: &Path) -> Duration {
    let modified = fs::symlink_metadata(dir.join(MANIFEST_FILE))
        .or_else(|_| fs::symlink_metadata(dir))
        .and_then(|m| m.modified());
    match modified {
        Ok(t) => SystemTime::now().duration_since(t).unwrap_or_default(),
        Err(_) => Duration::MAX,
    }
}

pub fn gc(store: &CacheStore, options: &GcOptions) -> Result<GcReport, StoreError> {
    let dry_run = options.dry_run;
    let live = live_keys(store, &options.runs_dirs, dry_run)?;
    let mut report = GcReport {
        dry_run,
        unverified_roots: live.unverified.clone(),
        ..GcReport::default()
    };
    let live = live.keys;
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
        if entry_age(&path) < options.older_than {
            report.kept_young += 1;
            if let Some(m) = key.as_ref().and_then(|k| Manifest::read(&path, Some(k))) {
                kept_digests.extend(m.preimage.inputs.values().map(|i| i.digest.clone()));
            }
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
        if name.starts_with(super::input_listing::TMP_PREFIX) {
            // A fingerprint's temp file, written throughout its walk: old means abandoned.
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a > super::input_listing::TMP_GRACE) {
                remove(&entry.path(), dry_run, &mut report)?;
            }
            continue;
        }
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
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(key) = StageKey::parse(&name) {
            if store.get(&key).is_some() {
                remove(&entry.path(), dry_run, &mut report)?;
            }
        }
        // A warm start's marker outlives neither its partial dir nor the commit.
        if let Some(key) = name.strip_suffix(".warm.json").and_then(StageKey::parse) {
            if store.get(&key).is_some() || !store.partial_dir(&key).exists() {
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
        remove_tree(path).map_err(io("delete", path))?;
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

/// The symlinks inside an entry, as problems: a stage writes plain files, so a link was put
/// there afterwards (and would make a hit read whatever it points at).
fn symlinks_inside(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(listing) = fs::read_dir(&d) else {
            found.push(format!(
                "`{}` cannot be read",
                d.strip_prefix(dir).unwrap_or(&d).display()
            ));
            continue;
        };
        for entry in listing.flatten() {
            let path = entry.path();
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => found.push(format!(
                    "`{}` is a symlink (to `{}`)",
                    path.strip_prefix(dir).unwrap_or(&path).display(),
                    fs::read_link(&path).unwrap_or_default().display()
                )),
                Ok(m) if m.is_dir() => stack.push(path),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// Re-hashes every committed entry's files against its manifest; reports every damaged entry
/// (an unreadable one does not stop the others).
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
        let mut problems = symlinks_inside(&dir);
        problems.extend(rehash_problems(&dir, &manifest));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use crate::cache::store::tests as store_tests;
    use crate::cache::store::Lookup;

    fn committed(store: &CacheStore, n: u64) -> StageKey {
        let preimage = store_tests::preimage(n);
        let key = preimage.key();
        let Lookup::Miss(lock) = store.lookup(&key, || {}).unwrap() else {
            panic!("expected a miss")
        };
        let pending = store.begin(lock).unwrap();
        fs::create_dir_all(pending.tmp_dir.join("sub")).unwrap();
        fs::write(pending.tmp_dir.join("sub/out.txt"), "x").unwrap();
        store
            .commit(pending, store_tests::manifest(&key, preimage))
            .unwrap();
        key
    }

    fn now() -> GcOptions {
        GcOptions {
            older_than: Duration::ZERO,
            ..GcOptions::default()
        }
    }

    #[test]
    fn an_entry_a_run_is_reading_is_not_deleted() {
        let dir = crate::cache::store::test_dir();
        let store = CacheStore::open(dir.path()).unwrap();
        let key = committed(&store, 1);
        let reading = store.read_lock(&key).unwrap();
        let report = gc(&store, &now()).unwrap();
        assert!(store.get(&key).is_some(), "deleted while read");
        assert_eq!(report.kept_entries, 1);
        drop(reading);
        gc(&store, &now()).unwrap();
        assert!(!store.entry_dir(&key).exists(), "read-only entry deleted");
    }

    #[test]
    fn young_unlinked_entries_wait_for_the_grace_age() {
        let dir = crate::cache::store::test_dir();
        let store = CacheStore::open(dir.path()).unwrap();
        let key = committed(&store, 2);
        let report = gc(&store, &GcOptions::default()).unwrap();
        assert_eq!((report.kept_young, report.removed.len()), (1, 0));
        assert!(store.get(&key).is_some());
    }

    #[test]
    fn root_records_round_trip_and_old_ones_still_parse() {
        let key = StageKey::parse(&"a".repeat(64)).unwrap();
        let record = RootRecord {
            link: "/p/runs/e/s".into(),
            from_cache: Some("../runs/e/s".into()),
            key: Some(key),
        };
        assert_eq!(RootRecord::parse(&record.to_text()), Some(record));
        let old = RootRecord::parse("/p/runs/e/s").unwrap();
        assert_eq!(
            (old.link, old.from_cache, old.key),
            ("/p/runs/e/s".into(), None, None)
        );
        assert_eq!(RootRecord::parse(""), None);
    }

    #[test]
    fn link_states() {
        let dir = crate::cache::store::test_dir();
        let store = CacheStore::open(&dir.path().join("cache")).unwrap();
        let key = committed(&store, 3);
        let runs = dir.path().join("runs");
        let link = store.link(&runs, "e", "s", &key).unwrap();
        assert_eq!(link_state(&store, &link), LinkState::Points(key));
        assert_eq!(link_state(&store, &runs.join("e/absent")), LinkState::Gone);
        assert_eq!(
            link_state(&store, &dir.path().join("no/such/dir/s")),
            LinkState::Unknown
        );
        // A path through a file: its directory cannot be read.
        fs::write(dir.path().join("file"), "").unwrap();
        assert_eq!(
            link_state(&store, &dir.path().join("file/s")),
            LinkState::Unknown
        );
    }
}
