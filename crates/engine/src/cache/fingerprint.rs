//! Fingerprints of external inputs (dataset directories, attribute files, weight files).
//!
//! An [`InputFingerprint`] is a digest plus the size of the per-file listing it was computed
//! from. The digest goes into the key of each stage reading the input; the listing is stored
//! once per digest in the cache (`fingerprints/<digest>.tsv`) so `plan` can say what changed
//! ("3 files modified"). Directories are fingerprinted by stat (relative path, size, mtime in ns)
//! by default, or by content (blake3 of each file, on the rayon pool) with
//! `fingerprint = "content"`; a single file is always fingerprinted by content. Paths are
//! relative to the input's root, so moving a dataset (with `mv`, which keeps mtimes) keeps its
//! fingerprint. Symlinks are followed.
//!
//! The listing is never held in memory: `walk.rs` produces its lines in sorted order, each fed
//! to the digest's hasher and to a [`ListingSink`] (the cache's listing file) as it comes, so
//! memory is bounded by the largest directory, not by the number of files. Listings are
//! compared as two sorted streams ([`diff_listings`]).

use serde::Deserialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    /// Files listed.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot fingerprint `{}`: {source}", path.display())]
pub struct FingerprintError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub(crate) fn err(path: &Path) -> impl FnOnce(io::Error) -> FingerprintError + '_ {
    move |source| FingerprintError {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a fingerprint's listing lines go as they are produced (the cache's listing file, or
/// nowhere).
pub trait ListingSink {
    fn line(&mut self, line: &[u8]) -> io::Result<()>;
}

impl<W: io::Write> ListingSink for W {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        self.write_all(line)
    }
}

/// Fingerprints a directory (in `mode`) or a single file (by content), keeping nothing but the
/// digest and the counts.
pub fn fingerprint(
    path: &Path,
    mode: FingerprintMode,
) -> Result<InputFingerprint, FingerprintError> {
    fingerprint_into(path, mode, &mut io::sink(), None)
}

/// [`fingerprint`], each listing line also written to `listing`; with `reuse`, content hashes
/// of files whose stat is unchanged come from the previous stat cache (`stat_cache.rs`) and
/// the new one is written beside it.
pub fn fingerprint_into(
    path: &Path,
    mode: FingerprintMode,
    listing: &mut dyn ListingSink,
    reuse: Option<&mut super::stat_cache::HashReuse>,
) -> Result<InputFingerprint, FingerprintError> {
    let meta = fs::metadata(path).map_err(err(path))?;
    let mode = if meta.is_dir() {
        mode
    } else {
        FingerprintMode::Content
    };
    let mut out = Digest::new(mode, listing);
    if meta.is_dir() {
        super::walk::walk(path, mode, reuse, &mut out)?;
    } else {
        let stamp = super::walk::content_stamp(path, &meta, "", reuse)?;
        out.record("", meta.len(), &stamp).map_err(err(path))?;
    }
    Ok(out.finish())
}

/// The digest being computed: `<mode>\n` and then every listing line, in order.
pub(crate) struct Digest<'a> {
    mode: FingerprintMode,
    hasher: blake3::Hasher,
    listing: &'a mut dyn ListingSink,
    line: Vec<u8>,
    files: usize,
    bytes: u64,
}

impl<'a> Digest<'a> {
    fn new(mode: FingerprintMode, listing: &'a mut dyn ListingSink) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(mode.as_str().as_bytes());
        hasher.update(b"\n");
        Digest {
            mode,
            hasher,
            listing,
            line: Vec::with_capacity(128),
            files: 0,
            bytes: 0,
        }
    }

    /// Adds one file; files must come in sorted path order.
    pub(crate) fn record(&mut self, path: &str, size: u64, stamp: &str) -> io::Result<()> {
        self.line.clear();
        write_line(&mut self.line, path, size, stamp);
        self.hasher.update(&self.line);
        self.files += 1;
        self.bytes += size;
        self.listing.line(&self.line)
    }

    fn finish(self) -> InputFingerprint {
        InputFingerprint {
            mode: self.mode,
            digest: self.hasher.finalize().to_hex().to_string(),
            files: self.files,
            bytes: self.bytes,
        }
    }
}

pub(crate) fn hash_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// One listing line: `<json-quoted path>\t<size>\t<stamp>\n`.
fn write_line(out: &mut Vec<u8>, path: &str, size: u64, stamp: &str) {
    // serde_json's quoting: a `Vec` writer cannot fail.
    let _ = serde_json::to_writer(&mut *out, path);
    out.push(b'\t');
    out.extend_from_slice(size.to_string().as_bytes());
    out.push(b'\t');
    out.extend_from_slice(stamp.as_bytes());
    out.push(b'\n');
}

/// The listing of `files`, one line per file (what the cache stores and the digest covers).
pub fn listing_text(files: &[FileRecord]) -> String {
    let mut out = Vec::with_capacity(files.len() * 48);
    for f in files {
        write_line(&mut out, &f.path, f.size, &f.stamp);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One listing line back into its record; `None` for a damaged line.
pub fn parse_line(line: &str) -> Option<FileRecord> {
    let mut parts = line.rsplitn(3, '\t');
    let stamp = parts.next()?.to_owned();
    let size = parts.next()?.parse().ok()?;
    let path = serde_json::from_str(parts.next()?).ok()?;
    Some(FileRecord { path, size, stamp })
}

pub fn parse_listing(text: &str) -> Vec<FileRecord> {
    text.lines().filter_map(parse_line).collect()
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

/// Compares two listings given as sorted streams (one record of each held at a time).
pub fn diff_listings(
    old: impl IntoIterator<Item = FileRecord>,
    new: impl IntoIterator<Item = FileRecord>,
) -> ListingDiff {
    let mut d = ListingDiff::default();
    let note = |d: &mut ListingDiff, p: &str| {
        if d.examples.len() < 3 {
            d.examples.push(p.to_owned());
        }
    };
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (Some(a), Some(b)) if a.path == b.path => {
                if a.size != b.size || a.stamp != b.stamp {
                    d.modified += 1;
                    note(&mut d, &a.path);
                }
                old.next();
                new.next();
            }
            (Some(a), Some(b)) if a.path < b.path => {
                d.removed += 1;
                note(&mut d, &a.path);
                old.next();
            }
            (Some(a), None) => {
                d.removed += 1;
                note(&mut d, &a.path);
                old.next();
            }
            (_, Some(b)) => {
                d.added += 1;
                note(&mut d, &b.path);
                new.next();
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

    /// The listing as the walk streams it.
    fn listing(path: &Path, mode: FingerprintMode) -> (InputFingerprint, Vec<FileRecord>) {
        let mut text = Vec::new();
        let fp = fingerprint_into(path, mode, &mut text, None).unwrap();
        (fp, parse_listing(&String::from_utf8(text).unwrap()))
    }

    #[test]
    fn listing_is_sorted_relative_and_round_trips() {
        let dir = tree();
        let (fp, files) = listing(dir.path(), FingerprintMode::Stat);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/b/x.txt", "a/y.txt", "z.txt"]);
        assert_eq!((fp.files, fp.bytes), (3, 6));
        assert_eq!(parse_listing(&listing_text(&files)), files);
    }

    /// The digest is blake3 over `<mode>\n` and the listing: the form keys were computed
    /// with before the walk streamed, so no key moves.
    #[test]
    fn the_streamed_digest_is_the_hash_of_the_whole_listing() {
        let dir = tree();
        for mode in [FingerprintMode::Stat, FingerprintMode::Content] {
            let (fp, files) = listing(dir.path(), mode);
            let mut hasher = blake3::Hasher::new();
            hasher.update(format!("{}\n", mode.as_str()).as_bytes());
            hasher.update(listing_text(&files).as_bytes());
            assert_eq!(fp.digest, hasher.finalize().to_hex().to_string());
        }
    }

    /// A per-directory sort that ignored the `/` after a folder's name would put `a/x` before
    /// `a-b` and `a.txt` (`-` and `.` sort before `/`) and change the digest.
    #[test]
    fn walk_order_is_the_byte_order_of_full_paths() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            "a/x", "a/b/c", "a-b", "a.txt", "a0", "ab/y", "A", "a/b-c", "a/b.d/e",
        ] {
            let full = dir.path().join(p);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, p).unwrap();
        }
        let (_, files) = listing(dir.path(), FingerprintMode::Stat);
        let got: Vec<String> = files.into_iter().map(|f| f.path).collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted);
        assert_eq!(got.len(), 9);
        assert_eq!(got[..3], ["A", "a-b", "a.txt"]);
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
        let d = diff_listings(old, new);
        assert_eq!((d.added, d.removed, d.modified), (2, 1, 1));
        assert_eq!(d.examples, ["a", "b", "d"]);
    }
}
