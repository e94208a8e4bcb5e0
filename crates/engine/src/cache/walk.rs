//! The sorted, streaming walk behind a directory fingerprint.
//!
//! Files come out in the byte order of their `/`-joined relative paths (the listing's order)
//! without collecting the tree: each directory's entries are read and sorted on their own,
//! a subdirectory sorting as `name/` so that its files land exactly where a global sort of
//! full paths would put them (`a-b` < `a/x` because `-` < `/`). Runs of consecutive files are
//! `stat`ed (and, by content, hashed) on the rayon pool in chunks, then emitted in order.
//! Memory is the entries of the directories on the current path plus one chunk: bounded by
//! directory fan-out, not by the number of files.

use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use rayon::prelude::*;

use super::fingerprint::{err, hash_file, Digest, FingerprintError, FingerprintMode};
use super::stat_cache::{FileStat, HashReuse, Previous};

/// Files per parallel chunk: enough to keep the pool busy, few enough to stay small.
const CHUNK: usize = 4096;

/// One directory entry: its name and whether it is (or links to) a directory.
struct Entry {
    /// The sort key: the name, with a trailing `/` for a directory.
    key: String,
    is_dir: bool,
}

impl Entry {
    fn name(&self) -> &str {
        if self.is_dir {
            &self.key[..self.key.len() - 1]
        } else {
            &self.key
        }
    }
}

/// Feeds every file under `root`, in sorted order, to `out`.
pub(crate) fn walk(
    root: &Path,
    mode: FingerprintMode,
    mut reuse: Option<&mut HashReuse>,
    out: &mut Digest<'_>,
) -> Result<(), FingerprintError> {
    walk_dir(root, "", mode, &mut reuse, out)
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    mode: FingerprintMode,
    reuse: &mut Option<&mut HashReuse>,
    out: &mut Digest<'_>,
) -> Result<(), FingerprintError> {
    let entries = sorted_entries(dir)?;
    let mut i = 0;
    while i < entries.len() {
        if entries[i].is_dir {
            let name = entries[i].name();
            walk_dir(&dir.join(name), &join(rel, name), mode, reuse, out)?;
            i += 1;
            continue;
        }
        let end = (i..entries.len())
            .take(CHUNK)
            .find(|&k| entries[k].is_dir)
            .unwrap_or(entries.len().min(i + CHUNK));
        files(dir, rel, &entries[i..end], mode, reuse, out)?;
        i = end;
    }
    Ok(())
}

/// The directory's entries, sorted by their keys. Only symlinks cost a `stat` here (to know
/// whether they point at a directory); the file type of the rest comes with the listing.
fn sorted_entries(dir: &Path) -> Result<Vec<Entry>, FingerprintError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(err(dir))? {
        let entry = entry.map_err(err(dir))?;
        let mut file_type = entry.file_type().map_err(err(dir))?;
        if file_type.is_symlink() {
            let full = entry.path();
            file_type = fs::metadata(&full).map_err(err(&full))?.file_type();
        }
        let mut key = entry.file_name().to_string_lossy().into_owned();
        let is_dir = file_type.is_dir();
        if is_dir {
            key.push('/');
        }
        entries.push(Entry { key, is_dir });
    }
    entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(entries)
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}

/// One chunk of consecutive files of `dir`: previous stat-cache rows looked up in order,
/// `stat` (and hashing) in parallel, then every line emitted in order.
fn files(
    dir: &Path,
    rel: &str,
    chunk: &[Entry],
    mode: FingerprintMode,
    reuse: &mut Option<&mut HashReuse>,
    out: &mut Digest<'_>,
) -> Result<(), FingerprintError> {
    let paths: Vec<String> = chunk.iter().map(|e| join(rel, e.name())).collect();
    let previous: Vec<Option<Previous>> = match (mode, reuse.as_deref_mut()) {
        (FingerprintMode::Content, Some(r)) => paths.iter().map(|p| r.previous(p)).collect(),
        _ => vec![None; paths.len()],
    };
    let stamped: Vec<Result<Stamped, FingerprintError>> = chunk
        .par_iter()
        .zip(previous)
        .map(|(entry, previous)| {
            let full = dir.join(entry.name());
            let meta = fs::metadata(&full).map_err(err(&full))?;
            match mode {
                FingerprintMode::Stat => Ok(Stamped {
                    size: meta.len(),
                    stamp: mtime_ns(&meta).to_string(),
                    content: None,
                }),
                FingerprintMode::Content => Ok(Stamped {
                    size: meta.len(),
                    content: Some(content_hash(&full, &meta, previous)?),
                    stamp: String::new(),
                }),
            }
        })
        .collect();
    for (path, stamped) in paths.iter().zip(stamped) {
        let stamped = stamped?;
        let stamp = match stamped.content {
            Some(content) => {
                if let Some(r) = reuse.as_deref_mut() {
                    r.record(path, &content.stat, &content.hash, content.reused);
                }
                content.hash
            }
            None => stamped.stamp,
        };
        out.record(path, stamped.size, &stamp).map_err(err(dir))?;
    }
    Ok(())
}

/// A file as the parallel part of a chunk leaves it.
struct Stamped {
    size: u64,
    /// Stat mode's stamp (the mtime); empty by content.
    stamp: String,
    content: Option<ContentHash>,
}

struct ContentHash {
    hash: String,
    stat: FileStat,
    /// Whether the hash came from the previous stat cache.
    reused: bool,
}

/// A single file's content stamp, through the stat cache when one is given.
pub(crate) fn content_stamp(
    path: &Path,
    meta: &fs::Metadata,
    rel: &str,
    reuse: Option<&mut HashReuse>,
) -> Result<String, FingerprintError> {
    let Some(reuse) = reuse else {
        return hash_file(path).map_err(err(path));
    };
    let content = content_hash(path, meta, reuse.previous(rel))?;
    reuse.record(rel, &content.stat, &content.hash, content.reused);
    Ok(content.hash)
}

/// The file's blake3: the previous one when its stat is unchanged, else read from the file.
fn content_hash(
    path: &Path,
    meta: &fs::Metadata,
    previous: Option<Previous>,
) -> Result<ContentHash, FingerprintError> {
    let stat = FileStat::of(meta);
    if let Some(hash) = previous.and_then(|p| p.hash_if_unchanged(&stat)) {
        return Ok(ContentHash {
            hash,
            stat,
            reused: true,
        });
    }
    Ok(ContentHash {
        hash: hash_file(path).map_err(err(path))?,
        stat,
        reused: false,
    })
}

pub(crate) fn mtime_ns(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}
