//! Fingerprints of external inputs (dataset directories, attribute files, weight files).
//!
//! An [`InputFingerprint`] is a digest plus the per-file listing it was computed from. The digest
//! goes into the key of each stage reading the input; the listing is stored once per digest in
//! the cache (`fingerprints/<digest>.tsv`) so `plan` can say what changed ("3 files modified").
//! Directories are fingerprinted by stat (relative path, size, mtime in ns) by default, or by
//! content (blake3 of each file, on the rayon pool) with `fingerprint = "content"`; a single file
//! is always fingerprinted by content. Paths are relative to the input's root, so moving a
//! dataset (with `mv`, which keeps mtimes) keeps its fingerprint. Symlinks are followed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;

use serde::Deserialize;

/// How an external input is fingerprinted into the keys of the stages that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FingerprintMode {
    /// Sorted relative path, size and mtime of every file: fast; can miss, should not falsely hit.
    #[default]
    Stat,
    /// blake3 of every file's bytes, on a rayon pool.
    Content,
}

impl FingerprintMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FingerprintMode::Stat => "stat",
            FingerprintMode::Content => "content",
        }
    }
}

/// One file of an input, as fingerprinted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Relative to the input root, `/`-separated; empty for a single-file input.
    pub path: String,
    pub size: u64,
    /// Stat mode: mtime in ns since the epoch. Content mode: blake3 hex.
    pub stamp: String,
}

#[derive(Debug, Clone)]
pub struct InputFingerprint {
    /// `stat` or `content` (single files are always `content`).
    pub mode: FingerprintMode,
    pub digest: String,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot fingerprint `{}`: {source}", path.display())]
pub struct FingerprintError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> FingerprintError + '_ {
    move |source| FingerprintError {
        path: path.to_path_buf(),
        source,
    }
}

/// Fingerprints a directory (in `mode`) or a single file (by content).
pub fn fingerprint(
    path: &Path,
    mode: FingerprintMode,
) -> Result<InputFingerprint, FingerprintError> {
    let meta = fs::metadata(path).map_err(err(path))?;
    if !meta.is_dir() {
        let stamp = hash_file(path).map_err(err(path))?;
        let files = vec![FileRecord {
            path: String::new(),
            size: meta.len(),
            stamp,
        }];
        return Ok(finish(FingerprintMode::Content, files));
    }
    let mut listed = Vec::new();
    walk(path, "", &mut listed)?;
    listed.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let files: Result<Vec<FileRecord>, FingerprintError> = match mode {
        FingerprintMode::Stat => Ok(listed
            .into_iter()
            .map(|(rel, size, mtime, _)| FileRecord {
                path: rel,
                size,
                stamp: mtime.to_string(),
            })
            .collect()),
        FingerprintMode::Content => listed
            .into_par_iter()
            .map(|(rel, size, _, full)| {
                let stamp = hash_file(&full).map_err(err(&full))?;
                Ok(FileRecord {
                    path: rel,
                    size,
                    stamp,
                })
            })
            .collect(),
    };
    Ok(finish(mode, files?))
}

/// Lists files under `dir` recursively: (relative path, size, mtime ns, full path).
/// Subdirectories are walked in parallel; a 200k-file tree is dominated by `stat` calls.
fn walk(
    dir: &Path,
    rel: &str,
    out: &mut Vec<(String, u64, u128, PathBuf)>,
) -> Result<(), FingerprintError> {
    let mut subdirs = Vec::new();
    for entry in fs::read_dir(dir).map_err(err(dir))? {
        let entry = entry.map_err(err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let full = entry.path();
        let mut file_type = entry.file_type().map_err(err(&full))?;
        let meta = if file_type.is_symlink() {
            let m = fs::metadata(&full).map_err(err(&full))?;
            file_type = m.file_type();
            Some(m)
        } else {
            None
        };
        if file_type.is_dir() {
            subdirs.push((full, child_rel));
            continue;
        }
        let meta = match meta {
            Some(m) => m,
            None => entry.metadata().map_err(err(&full))?,
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out.push((child_rel, meta.len(), mtime, full));
    }
    let nested: Result<Vec<Vec<_>>, FingerprintError> = subdirs
        .into_par_iter()
        .map(|(full, child_rel)| {
            let mut v = Vec::new();
            walk(&full, &child_rel, &mut v)?;
            Ok(v)
        })
        .collect();
    for v in nested? {
        out.extend(v);
    }
    Ok(())
}

pub(crate) fn hash_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn finish(mode: FingerprintMode, files: Vec<FileRecord>) -> InputFingerprint {
    let listing = listing_text(&files);
    let mut hasher = blake3::Hasher::new();
    hasher.update(mode.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(listing.as_bytes());
    InputFingerprint {
        mode,
        digest: hasher.finalize().to_hex().to_string(),
        files,
    }
}

/// One line per file: `<json-quoted path>\t<size>\t<stamp>`.
pub fn listing_text(files: &[FileRecord]) -> String {
    let mut out = String::with_capacity(files.len() * 48);
    for f in files {
        out.push_str(&serde_json::Value::String(f.path.clone()).to_string());
        out.push('\t');
        out.push_str(&f.size.to_string());
        out.push('\t');
        out.push_str(&f.stamp);
        out.push('\n');
    }
    out
}

pub fn parse_listing(text: &str) -> Vec<FileRecord> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.rsplitn(3, '\t');
            let stamp = parts.next()?.to_owned();
            let size = parts.next()?.parse().ok()?;
            let path = serde_json::from_str(parts.next()?).ok()?;
            Some(FileRecord { path, size, stamp })
        })
        .collect()
}

/// How two listings differ, for `plan`'s "input `celeba` changed: 3 files modified".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListingDiff {
    pub added: usize,
    pub removed: usize,
    pub modified: usize,
    /// Up to three example paths, for the sentence.
    pub examples: Vec<String>,
}

pub fn diff_listings(old: &[FileRecord], new: &[FileRecord]) -> ListingDiff {
    let mut d = ListingDiff::default();
    let (mut i, mut j) = (0, 0);
    let note = |d: &mut ListingDiff, p: &str| {
        if d.examples.len() < 3 {
            d.examples.push(p.to_owned());
        }
    };
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.path == b.path => {
                if a.size != b.size || a.stamp != b.stamp {
                    d.modified += 1;
                    note(&mut d, &a.path);
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.path < b.path => {
                d.removed += 1;
                note(&mut d, &a.path);
                i += 1;
            }
            (Some(a), None) => {
                d.removed += 1;
                note(&mut d, &a.path);
                i += 1;
            }
            (_, Some(b)) => {
                d.added += 1;
                note(&mut d, &b.path);
                j += 1;
            }
            (None, None) => break,
        }
    }
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/x.txt"), "x").unwrap();
        fs::write(dir.path().join("a/y.txt"), "yy").unwrap();
        fs::write(dir.path().join("z.txt"), "zzz").unwrap();
        dir
    }

    #[test]
    fn listing_is_sorted_relative_and_round_trips() {
        let dir = tree();
        let fp = fingerprint(dir.path(), FingerprintMode::Stat).unwrap();
        let paths: Vec<&str> = fp.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/b/x.txt", "a/y.txt", "z.txt"]);
        assert_eq!(parse_listing(&listing_text(&fp.files)), fp.files);
    }

    #[test]
    fn stat_mode_sees_mtime_content_mode_does_not() {
        let dir = tree();
        let stat = fingerprint(dir.path(), FingerprintMode::Stat).unwrap();
        let content = fingerprint(dir.path(), FingerprintMode::Content).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(dir.path().join("z.txt"))
            .unwrap();
        f.set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
        )
        .unwrap();
        assert_ne!(
            fingerprint(dir.path(), FingerprintMode::Stat)
                .unwrap()
                .digest,
            stat.digest
        );
        assert_eq!(
            fingerprint(dir.path(), FingerprintMode::Content)
                .unwrap()
                .digest,
            content.digest
        );
        assert_ne!(stat.digest, content.digest);
    }

    #[test]
    fn moving_a_directory_keeps_its_fingerprint() {
        let dir = tree();
        let before = fingerprint(dir.path(), FingerprintMode::Stat).unwrap();
        let moved = dir.path().with_extension("moved");
        fs::rename(dir.path(), &moved).unwrap();
        let after = fingerprint(&moved, FingerprintMode::Stat).unwrap();
        fs::rename(&moved, dir.path()).unwrap();
        assert_eq!(before.digest, after.digest);
    }

    #[test]
    fn diff_counts_added_removed_modified() {
        let r = |p: &str, s: &str| FileRecord {
            path: p.into(),
            size: 1,
            stamp: s.into(),
        };
        let old = [r("a", "1"), r("b", "1"), r("c", "1")];
        let new = [r("b", "2"), r("c", "1"), r("d", "1"), r("e", "1")];
        let d = diff_listings(&old, &new);
        assert_eq!((d.added, d.removed, d.modified), (2, 1, 1));
    }
}
