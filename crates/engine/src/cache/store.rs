//! `CacheStore`: the on-disk cache (layout in `key.rs`'s module docs).
//!
//! The only way to write an entry is through the [`EntryLock`] a miss hands out
//! ([`Lookup::Miss`]), turned into a [`PendingEntry`] (temp dir + partial dir) and committed by
//! renaming the finished temp dir, manifest written and fsynced last. Locks are `flock`s on
//! per-key files, so the kernel releases the lock of a killed process: a stale lock never blocks.
//! This module knows nothing about stages or scheduling.
//!
//! A committed entry is read-only (files `r--`, directories `r-x`), and its manifest records
//! each output's size and mtime: [`CacheStore::get`] compares them on every hit (a `stat` per
//! file, no hashing), so an entry edited through a `runs/` link is recomputed, never served.
//! Moving or copying a cache keeps its entries when mtimes are kept (`mv`, `cp -a`,
//! `rsync -a`); a copy that resets them (`cp -r`) recomputes what it reads.
//! Readers take a shared `flock` on the key's lock file ([`EntryReadLock`]) while they use an
//! entry; `gc` deletes only under the exclusive lock, so it never pulls an entry from under a
//! run.
//!
//! # Sharing a cache between users
//!
//! Several users may point `--cache-dir` at one directory (a group-writable directory with the
//! setgid bit, and a umask of `002` for everyone); locks are `flock`s, so runs by different
//! users never compute a key twice at once. What this does not give: protection between the
//! users. Any member can write the cache's files, so any member can forge an entry (a manifest
//! re-hashes to its key, but nothing signs its outputs); a umask of `022` leaves entries, lock
//! files and `roots/` that the others cannot use (their runs then fail with a permission error
//! naming the file). `gc` keeps every entry whose link it cannot check (another user's
//! unreadable `runs/`). Share a cache only with people whose results you would trust anyway.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::fingerprint;
use super::key::StageKey;
use super::manifest::{Manifest, OutputFile, MANIFEST_FILE};

pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// Files a directory may hold and still become a cache: what version control leaves in an
/// otherwise empty directory it tracks.
const VCS_PLACEHOLDERS: &[&str] = &[".gitignore", ".gitkeep", ".keep", ".hgkeep"];

const TAG_TEXT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by vaepipe.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` is not a vaepipe cache (it has no {CACHEDIR_TAG}); refusing to touch it", .0.display())]
    NotACache(PathBuf),
    #[error("`{}` is not empty and is not a vaepipe cache (it has no {CACHEDIR_TAG}); refusing to make it one\n  help: give `--cache-dir` (or `[experiment] cache`) a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("`{}` exists and is not a link made by vaepipe; move it away so the run's output can be linked there", .0.display())]
    LinkBlocked(PathBuf),
    #[error("the stage wrote `{MANIFEST_FILE}` at the top of its output, a name the cache reserves for itself")]
    ReservedName,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct CacheStore {
    root: PathBuf,
}

/// A committed entry.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub key: StageKey,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

pub enum Lookup {
    /// The entry, and the shared lock that keeps it while the caller uses it.
    Hit(Box<Artifact>, EntryReadLock),
    Miss(EntryLock),
}

/// Exclusive right to write the entry for `key`; released on drop (or by the kernel on death).
#[derive(Debug)]
pub struct EntryLock {
    key: StageKey,
    _file: fs::File,
}

/// A shared lock on `key`'s entry, held while a run links or reads it (a hit, an upstream
/// read): `gc`, which deletes only under the exclusive lock, leaves the entry alone meanwhile.
#[derive(Debug)]
pub struct EntryReadLock {
    _file: fs::File,
}

impl EntryLock {
    pub fn key(&self) -> &StageKey {
        &self.key
    }
}

/// An entry being computed: the stage writes `tmp_dir`; `partial_dir` survives crashes.
#[derive(Debug)]
pub struct PendingEntry {
    lock: EntryLock,
    pub tmp_dir: PathBuf,
    pub partial_dir: PathBuf,
}

impl PendingEntry {
    pub fn key(&self) -> &StageKey {
        &self.lock.key
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        // Committed entries have moved away; a failed run leaves nothing that looks complete
        // (a commit that failed half-way may have made parts of it read-only already).
        let _ = remove_tree(&self.tmp_dir);
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CacheStore {
    /// Opens a cache, creating it (with `CACHEDIR.TAG`) if needed. A directory that exists,
    /// holds something and has no tag is refused ([`StoreError::NotEmpty`]): tagging it would
    /// let `gc` delete files that were never the cache's.
    pub fn open(root: &Path) -> Result<CacheStore, StoreError> {
        fs::create_dir_all(root).map_err(io_err("create the cache directory", root))?;
        let root = fs::canonicalize(root).map_err(io_err("resolve the cache directory", root))?;
        let tag = root.join(CACHEDIR_TAG);
        if !tag.exists() {
            let listing = fs::read_dir(&root).map_err(io_err("read", &root))?;
            // A version-control placeholder (a checkout's `cache/.gitignore`) is not someone's
            // data: adopting its directory is what the user asked for, and `gc` never touches
            // files outside the cache's own subdirectories.
            let foreign = listing.filter_map(Result::ok).any(|entry| {
                let placeholder = VCS_PLACEHOLDERS
                    .iter()
                    .any(|name| entry.file_name() == *name);
                !(placeholder && entry.file_type().is_ok_and(|t| t.is_file()))
            });
            if foreign {
                return Err(StoreError::NotEmpty(root));
            }
            fs::write(&tag, TAG_TEXT).map_err(io_err("write", &tag))?;
        }
        for sub in [
            "entries",
            "tmp",
            "partial",
            "locks",
            "fingerprints",
            "roots",
            "families",
        ] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(CacheStore { root })
    }

    /// Opens an existing cache for maintenance (`gc`, `verify`); refuses a directory without
    /// `CACHEDIR.TAG`, so a mistyped `--cache-dir` cannot delete someone's files.
    pub fn open_existing(root: &Path) -> Result<CacheStore, StoreError> {
        if !root.join(CACHEDIR_TAG).is_file() {
            return Err(StoreError::NotACache(root.to_path_buf()));
        }
        CacheStore::open(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entries_dir(&self) -> PathBuf {
        self.root.join("entries")
    }

    pub fn entry_dir(&self, key: &StageKey) -> PathBuf {
        self.root.join("entries").join(key.as_str())
    }

    pub fn partial_dir(&self, key: &StageKey) -> PathBuf {
        self.root.join("partial").join(key.as_str())
    }

    pub(crate) fn lock_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    /// The committed entry for `key`, if there is a valid and untouched one: its manifest is
    /// valid and every output still has the size and mtime the manifest recorded (see
    /// [`CacheStore::damage`]). A damaged entry is logged and treated as missing, so it is
    /// recomputed.
    pub fn get(&self, key: &StageKey) -> Option<Artifact> {
        let dir = self.entry_dir(key);
        let manifest = Manifest::read(&dir, Some(key))?;
        if let Some(problem) = damage(&dir, &manifest) {
            tracing::warn!(
                "cache entry {}… (stage `{}`) was changed after it was committed ({problem}); it is not used",
                key.short(),
                manifest.stage
            );
            return None;
        }
        Some(Artifact {
            key: key.clone(),
            dir,
            manifest,
        })
    }

    /// A hit (with the shared lock that keeps the entry while the caller uses it), or the
    /// exclusive lock to compute a miss. `on_wait` is called (once) before blocking on a lock
    /// another process holds; after acquiring it, the entry is checked again, since the holder
    /// has usually just committed it.
    pub fn lookup(&self, key: &StageKey, on_wait: impl FnOnce()) -> Result<Lookup, StoreError> {
        if let Some(reader) = self.try_read_lock(key)? {
            if let Some(a) = self.get(key) {
                return Ok(Lookup::Hit(Box::new(a), reader));
            }
        }
        let lock = self.lock(key, on_wait)?;
        match self.get(key) {
            Some(_) => {
                drop(lock);
                let reader = self.read_lock(key)?;
                // `gc` may have taken the entry between the two locks.
                match self.get(key) {
                    Some(a) => Ok(Lookup::Hit(Box::new(a), reader)),
                    None => {
                        drop(reader);
                        self.lookup_miss(key)
                    }
                }
            }
            None => Ok(Lookup::Miss(lock)),
        }
    }

    fn lookup_miss(&self, key: &StageKey) -> Result<Lookup, StoreError> {
        Ok(Lookup::Miss(self.lock(key, || {})?))
    }

    fn lock_file(&self, key: &StageKey) -> Result<fs::File, StoreError> {
        let path = self.lock_path(key);
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock file", &path))
    }

    /// The shared lock on `key`'s entry (waits while a writer or `gc` holds the exclusive one).
    pub fn read_lock(&self, key: &StageKey) -> Result<EntryReadLock, StoreError> {
        let file = self.lock_file(key)?;
        file.lock_shared()
            .map_err(io_err("lock", &self.lock_path(key)))?;
        Ok(EntryReadLock { _file: file })
    }

    pub(crate) fn try_read_lock(
        &self,
        key: &StageKey,
    ) -> Result<Option<EntryReadLock>, StoreError> {
        let file = self.lock_file(key)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(EntryReadLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &self.lock_path(key))(e)),
        }
    }

    /// Takes the per-key lock, calling `on_wait` first if someone else holds it.
    pub fn lock(&self, key: &StageKey, on_wait: impl FnOnce()) -> Result<EntryLock, StoreError> {
        let path = self.lock_path(key);
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock().map_err(io_err("lock", &path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
        }
        Ok(EntryLock {
            key: key.clone(),
            _file: file,
        })
    }

    /// Like `lock`, but gives up instead of waiting (for `gc`).
    pub(crate) fn try_lock(&self, key: &StageKey) -> Result<Option<EntryLock>, StoreError> {
        let path = self.lock_path(key);
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(EntryLock {
                key: key.clone(),
                _file: file,
            })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
        }
    }

    /// A fresh path under `tmp/` for work on `key` (`<key>.<tag>.<pid>.<n>`): on the cache's
    /// filesystem, and removed by `gc` once the key's lock is free.
    pub(crate) fn tmp_path(&self, key: &StageKey, tag: &str) -> PathBuf {
        self.tmp_file(&format!("{key}.{tag}"))
    }

    /// A fresh path under `tmp/` named `<stem>.<pid>.<n>`, unique within this process and
    /// across live ones.
    pub(crate) fn tmp_file(&self, stem: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{stem}.{}.{n}", std::process::id()))
    }

    /// Creates a fresh temp dir (same filesystem as `entries/`) and the key's partial dir.
    pub fn begin(&self, lock: EntryLock) -> Result<PendingEntry, StoreError> {
        let tmp_dir = self.tmp_file(&lock.key.to_string());
        let _ = fs::remove_dir_all(&tmp_dir);
        fs::create_dir_all(&tmp_dir).map_err(io_err("create", &tmp_dir))?;
        let partial_dir = self.partial_dir(&lock.key);
        fs::create_dir_all(&partial_dir).map_err(io_err("create", &partial_dir))?;
        Ok(PendingEntry {
            lock,
            tmp_dir,
            partial_dir,
        })
    }

    /// Hashes the outputs into `manifest.outputs`, writes and fsyncs the manifest, then renames
    /// the temp dir to `entries/<key>` (replacing an existing entry, for `--force`), and removes
    /// the partial dir.
    pub fn commit(
        &self,
        pending: PendingEntry,
        mut manifest: Manifest,
    ) -> Result<Artifact, StoreError> {
        let tmp = pending.tmp_dir.clone();
        if tmp.join(MANIFEST_FILE).exists() {
            return Err(StoreError::ReservedName);
        }
        manifest.outputs = hash_outputs(&tmp)?;
        // Read-only before the mtimes are taken (a chmod changes ctime, not mtime); the entry's
        // own directory last, after its rename (moving a directory needs it writable).
        set_read_only_below(&tmp).map_err(io_err("make read-only", &tmp))?;
        for out in &mut manifest.outputs {
            let file = tmp.join(&out.path);
            out.mtime_ns = Some(mtime_ns(&file).map_err(io_err("read", &file))?);
        }
        let path = tmp.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| StoreError::Io {
            what: "encode",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let mut f = fs::File::create(&path).map_err(io_err("write", &path))?;
        f.write_all(text.as_bytes())
            .map_err(io_err("write", &path))?;
        f.sync_all().map_err(io_err("sync", &path))?;
        sync_dir(&tmp);

        let key = pending.key().clone();
        let dest = self.entry_dir(&key);
        let mut replaced = None;
        if dest.exists() {
            let aside = self
                .root
                .join("tmp")
                .join(format!("{key}.old.{}", std::process::id()));
            let _ = remove_tree(&aside);
            make_writable(&dest).map_err(io_err("move aside the old entry", &dest))?;
            fs::rename(&dest, &aside).map_err(io_err("move aside the old entry", &dest))?;
            replaced = Some(aside);
        }
        set_read_only_file(&path).map_err(io_err("make read-only", &path))?;
        fs::rename(&tmp, &dest).map_err(io_err("commit the entry", &dest))?;
        set_read_only_dir(&dest).map_err(io_err("make read-only", &dest))?;
        sync_dir(&self.entries_dir());
        if let Some(old) = replaced {
            let _ = remove_tree(&old);
        }
        let _ = fs::remove_dir_all(&pending.partial_dir);
        let _ = fs::remove_file(super::family::marker_path(self, &key));
        if let Some(family) = &manifest.family {
            // Best effort: without the line, later runs only miss this warm start.
            if let Err(e) = super::family::record(self, family, &key) {
                tracing::warn!("cannot add entry {}… to its family index: {e}", key.short());
            }
        }
        Ok(Artifact {
            key,
            dir: dest,
            manifest,
        })
    }

    /// Points `runs_dir/<experiment>/<stage>` at the entry (a relative symlink, replaced
    /// atomically) and records the link in `roots/` so `gc` keeps the entry.
    pub fn link(
        &self,
        runs_dir: &Path,
        experiment: &str,
        stage: &str,
        key: &StageKey,
    ) -> Result<PathBuf, StoreError> {
        self.link_at(runs_dir, &Path::new(experiment).join(stage), key)
    }

    /// Like [`CacheStore::link`], for any link path relative to `runs_dir`
    /// (`<experiment>/<variant>/<stage>` in a sweep).
    pub fn link_at(
        &self,
        runs_dir: &Path,
        rel: &Path,
        key: &StageKey,
    ) -> Result<PathBuf, StoreError> {
        let stage = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = match rel.parent() {
            Some(p) => runs_dir.join(p),
            None => runs_dir.to_path_buf(),
        };
        fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
        let parent = fs::canonicalize(&parent).map_err(io_err("resolve", &parent))?;
        let link = parent.join(&stage);
        if let Ok(meta) = fs::symlink_metadata(&link) {
            if !meta.file_type().is_symlink() {
                return Err(StoreError::LinkBlocked(link));
            }
        }
        let target = relative_path(&parent, &self.entry_dir(key));
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(".{stage}.{}.{n}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink_dir(&target, &tmp).map_err(io_err("create link", &tmp))?;
        fs::rename(&tmp, &link).map_err(io_err("replace link", &link))?;

        let id = blake3::hash(link.to_string_lossy().as_bytes()).to_hex();
        let root_file = self.root.join("roots").join(&id.as_str()[..32]);
        let record = super::gc::RootRecord {
            link: link.clone(),
            from_cache: Some(relative_path(&self.root, &link)),
            key: Some(key.clone()),
        };
        crate::atomic_file::write_atomic(&root_file, record.to_text().as_bytes())
            .map_err(io_err("write", &root_file))?;
        Ok(link)
    }

    /// The key a `runs/` link currently points at, if it points into this cache.
    pub fn linked_key(&self, link: &Path) -> Option<StageKey> {
        let target = fs::read_link(link).ok()?;
        let resolved = link.parent()?.join(target);
        let resolved = fs::canonicalize(resolved).ok()?;
        if resolved.parent()? != self.entries_dir() {
            return None;
        }
        StageKey::parse(resolved.file_name()?.to_str()?)
    }
}

/// Every file under `dir` (recursively), hashed with blake3 on the rayon pool.
pub(crate) fn hash_outputs(dir: &Path) -> Result<Vec<OutputFile>, StoreError> {
    let mut files = Vec::new();
    list_files(dir, "", &mut files)?;
    files.sort();
    files
        .into_par_iter()
        .map(|rel| {
            let full = dir.join(&rel);
            let size = fs::metadata(&full).map_err(io_err("read", &full))?.len();
            let blake3 = fingerprint::hash_file(&full).map_err(io_err("hash", &full))?;
            Ok(OutputFile {
                path: rel,
                size,
                blake3,
                mtime_ns: None,
            })
        })
        .collect()
}

pub(crate) fn list_files(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        // Never through a symlink: a link to a parent would recurse forever.
        if fs::symlink_metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            list_files(&path, &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

/// Total size in bytes of the files under `path`.
pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|it| it.filter_map(Result::ok).map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Why a committed entry can no longer be served, or `None`: an output that is missing, not a
/// plain file (a symlink), or whose size or mtime differs from the manifest. One `stat` per
/// output; `cache verify` re-hashes for the full check.
pub fn damage(dir: &Path, manifest: &Manifest) -> Option<String> {
    for out in &manifest.outputs {
        let path = dir.join(&out.path);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => return Some(format!("`{}` is missing", out.path)),
        };
        if !meta.file_type().is_file() {
            return Some(format!("`{}` is no longer a plain file", out.path));
        }
        if meta.len() != out.size {
            return Some(format!(
                "`{}` has {} bytes, not {}",
                out.path,
                meta.len(),
                out.size
            ));
        }
        if let Some(want) = out.mtime_ns {
            if mtime_ns(&path).ok() != Some(want) {
                return Some(format!("`{}` was modified", out.path));
            }
        }
    }
    None
}

/// What re-hashing a committed entry finds wrong against its manifest: outputs missing,
/// resized, with another blake3, or added after the commit. Empty when it is intact.
pub fn rehash_problems(dir: &Path, manifest: &Manifest) -> Vec<String> {
    let actual = match hash_outputs(dir) {
        Ok(a) => a,
        Err(e) => return vec![format!("cannot be read: {e}")],
    };
    let actual: Vec<_> = actual
        .into_iter()
        .filter(|f| f.path != MANIFEST_FILE)
        .collect();
    let mut problems = Vec::new();
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
    problems
}

/// A file's mtime in nanoseconds since the Unix epoch.
pub(crate) fn mtime_ns(path: &Path) -> io::Result<u64> {
    let modified = fs::symlink_metadata(path)?.modified()?;
    let since = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(mode & 0o200 == 0);
    fs::set_permissions(path, perms)
}

/// The permission bits of `path` without write bits (keeps group/other read as they were).
fn read_only_mode(path: &Path) -> io::Result<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(fs::symlink_metadata(path)?.permissions().mode() & 0o7555)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(0o555)
    }
}

fn set_read_only_file(path: &Path) -> io::Result<()> {
    set_mode(path, read_only_mode(path)?)
}

fn set_read_only_dir(path: &Path) -> io::Result<()> {
    set_mode(path, read_only_mode(path)? | 0o100)
}

/// Everything under `dir` read-only (files, then each directory after its contents); `dir`
/// itself stays as it is. Symlinks are left alone (their mode means nothing).
fn set_read_only_below(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            set_read_only_below(&path)?;
            set_read_only_dir(&path)?;
        } else if meta.is_file() {
            set_read_only_file(&path)?;
        }
    }
    Ok(())
}

/// Gives the owner write permission on `dir` and every directory below it, so its contents can
/// be removed (a committed entry is read-only).
pub(crate) fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        set_mode(dir, meta.permissions().mode() | 0o700)?;
    }
    #[cfg(not(unix))]
    set_mode(dir, 0o755)?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if fs::symlink_metadata(&path)?.is_dir() {
            make_writable(&path)?;
        }
    }
    Ok(())
}

/// Removes a file or a directory tree, read-only entries included.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        make_writable(path)?;
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// A temp dir for tests that commit entries: made writable before removal, so a test run by a
/// user who is not root leaves nothing behind.
#[cfg(test)]
pub(crate) struct TestDir(tempfile::TempDir);

#[cfg(test)]
impl TestDir {
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = make_writable(self.0.path());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test helper: a panic is a test failure
pub(crate) fn test_dir() -> TestDir {
    TestDir(tempfile::tempdir().unwrap())
}

fn sync_dir(dir: &Path) {
    // Best effort: not every filesystem lets a directory be fsynced.
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(unix)]
fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

/// `to` relative to the directory `from` (both absolute).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
pub(crate) mod tests {
    use super::*;
    use crate::cache::key::{KeyPreimage, KEY_FORMAT};
    use std::collections::BTreeMap;

    /// A manifest for `key` with nothing but its preimage (shared with `gc`'s tests).
    pub(crate) fn manifest(key: &StageKey, preimage: KeyPreimage) -> Manifest {
        Manifest {
            manifest_format: 1,
            key: key.clone(),
            stage: "s".into(),
            experiment: "e".into(),
            kind: "k".into(),
            kind_version: 1,
            params: serde_json::json!({}),
            preimage,
            upstream: BTreeMap::new(),
            inputs: BTreeMap::new(),
            overrides: vec![],
            outputs: vec![],
            started_at: String::new(),
            finished_at: String::new(),
            duration_s: 0.0,
            tool_version: "0".into(),
            device: "cpu".into(),
            threads: None,
            notes: BTreeMap::new(),
            family: None,
            warm_start_from: None,
        }
    }

    /// A distinct preimage per `seed`.
    pub(crate) fn preimage(seed: u64) -> KeyPreimage {
        KeyPreimage {
            format: KEY_FORMAT,
            kind: "k".into(),
            kind_version: 1,
            params: serde_json::json!({}),
            seed,
            upstream: BTreeMap::new(),
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn miss_then_commit_then_hit() {
        let dir = test_dir();
        let store = CacheStore::open(dir.path()).unwrap();
        assert!(dir.path().join(CACHEDIR_TAG).is_file());
        let p = preimage(1);
        let key = p.key();
        let Lookup::Miss(lock) = store.lookup(&key, || {}).unwrap() else {
            panic!("expected a miss")
        };
        let pending = store.begin(lock).unwrap();
        fs::write(pending.tmp_dir.join("out.txt"), "hello").unwrap();
        fs::write(pending.partial_dir.join("ckpt"), "1").unwrap();
        let partial = pending.partial_dir.clone();
        let artifact = store.commit(pending, manifest(&key, p)).unwrap();
        assert_eq!(artifact.manifest.outputs.len(), 1);
        assert_eq!(artifact.manifest.outputs[0].size, 5);
        assert!(!partial.exists(), "partial dir is removed once committed");
        assert!(matches!(
            store.lookup(&key, || {}).unwrap(),
            Lookup::Hit(..)
        ));
    }

    #[test]
    fn entry_without_valid_manifest_is_a_miss() {
        let dir = test_dir();
        let store = CacheStore::open(dir.path()).unwrap();
        let p = preimage(2);
        let key = p.key();
        fs::create_dir_all(store.entry_dir(&key)).unwrap();
        assert!(store.get(&key).is_none());
        // A manifest whose preimage does not hash to its key is not valid either.
        let m = manifest(&key, preimage(3));
        fs::write(
            store.entry_dir(&key).join(MANIFEST_FILE),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        assert!(store.get(&key).is_none());
    }

    #[test]
    fn dropped_pending_entry_leaves_no_entry_but_keeps_partial() {
        let dir = test_dir();
        let store = CacheStore::open(dir.path()).unwrap();
        let key = preimage(4).key();
        let lock = store.lock(&key, || {}).unwrap();
        let pending = store.begin(lock).unwrap();
        fs::write(pending.partial_dir.join("ckpt"), "1").unwrap();
        let (tmp, partial) = (pending.tmp_dir.clone(), pending.partial_dir.clone());
        drop(pending);
        assert!(!tmp.exists());
        assert!(partial.join("ckpt").exists());
        assert!(store.get(&key).is_none());
    }

    #[test]
    fn second_lock_waits_and_says_so() {
        let dir = test_dir();
        let store = CacheStore::open(dir.path()).unwrap();
        let key = preimage(5).key();
        let held = store.lock(&key, || {}).unwrap();
        assert!(store.try_lock(&key).unwrap().is_none());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let store = &store;
            let key = &key;
            let waiter = s.spawn(move || {
                store.lock(key, || tx.send(()).unwrap()).unwrap();
            });
            rx.recv().unwrap(); // the waiter announced that it waits
            drop(held);
            waiter.join().unwrap();
        });
    }

    #[test]
    fn links_are_relative_and_survive_moving_the_project() {
        let dir = test_dir();
        let project = dir.path().join("p");
        let store = CacheStore::open(&project.join("cache")).unwrap();
        let key = preimage(6).key();
        fs::create_dir_all(store.entry_dir(&key)).unwrap();
        let link = store
            .link(&project.join("runs"), "exp", "train", &key)
            .unwrap();
        assert_eq!(store.linked_key(&link), Some(key.clone()));
        assert!(fs::read_link(&link).unwrap().is_relative());
        let moved = dir.path().join("q");
        fs::rename(&project, &moved).unwrap();
        assert!(moved.join("runs/exp/train").is_dir());
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/a/runs/e"), Path::new("/a/cache/entries/k")),
            PathBuf::from("../../cache/entries/k")
        );
    }
}
