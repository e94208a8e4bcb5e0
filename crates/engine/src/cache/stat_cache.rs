//! The stat cache: content hashes of an input's files from its last fingerprint, reused for
//! files whose stat has not changed since, so a content fingerprint of an unchanged dataset
//! costs a walk instead of reading every byte.
//!
//! One file per input root, `<cache>/stat-cache/<blake3 of the canonical root>.tsv`: a header
//! naming the format and the root, then one line per file in listing order (`<json path>\t
//! size\tmtime ns\tctime ns\tinode\tdevice\tblake3`). The walk reads the previous file as a
//! sorted stream, merge-joined against its own sorted order ([`HashReuse::previous`]), and
//! writes the new one as it goes into a temp file that is fsynced and renamed over the old
//! only when the fingerprint finished: a killed or failed walk leaves the previous file
//! whole. A hash is reused only when size, mtime, ctime, inode and device all match (ctime
//! cannot be set back by a user, so a `touch -d` or a copy with kept mtimes is seen), and a
//! file is recorded only when its mtime and ctime are older than the walk's start by more
//! than the clock's tick: a file written during or just before the walk is hashed again next
//! time rather than trusted ("racy" entries, as git's index handles them).

use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HEADER: &str = "vaepipe stat cache 1";

/// How much older than the walk a file's mtime and ctime must be to be recorded.
pub(crate) const RACY_MARGIN: Duration = Duration::from_secs(2);

/// What a file's stat says, as far as the reuse of its hash goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl FileStat {
    pub fn of(meta: &fs::Metadata) -> Self {
        FileStat {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// A file's row in the previous stat cache.
#[derive(Debug, Clone)]
pub struct Previous {
    stat: FileStat,
    hash: String,
}

impl Previous {
    /// The recorded hash, when the file's stat is exactly what it was.
    pub fn hash_if_unchanged(self, now: &FileStat) -> Option<String> {
        (self.stat == *now).then_some(self.hash)
    }
}

/// One content fingerprint's use of the stat cache: the previous file as a sorted stream,
/// the new one being written.
pub struct HashReuse {
    previous: Option<io::Lines<BufReader<fs::File>>>,
    /// The next unread row of the previous file.
    peeked: Option<(String, Previous)>,
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<fs::File>>,
    /// Files whose mtime or ctime is at or after this (ns) are not recorded.
    racy_from_ns: i128,
    reused: usize,
}

impl HashReuse {
    /// Opens the stat cache of `root` in `dir` (the previous one if any, a temp file for the
    /// new one). `None` when the new one cannot be written: the fingerprint then hashes
    /// everything, as without a cache.
    pub fn open(dir: &Path, root: &Path, tmp: PathBuf) -> Option<Self> {
        Self::open_with_margin(dir, root, tmp, RACY_MARGIN)
    }

    /// [`HashReuse::open`] with another racy margin (tests, which cannot wait seconds).
    pub(crate) fn open_with_margin(
        dir: &Path,
        root: &Path,
        tmp: PathBuf,
        margin: Duration,
    ) -> Option<Self> {
        let root = fs::canonicalize(root).ok()?;
        let root_text = root.to_string_lossy();
        let name = blake3::hash(root_text.as_bytes()).to_hex();
        let target = dir.join(format!("{}.tsv", &name[..32]));
        let header = format!(
            "{HEADER}\t{}\n",
            serde_json::Value::from(root_text.as_ref())
        );
        fs::create_dir_all(dir).ok()?;
        let mut writer = BufWriter::new(fs::File::create(&tmp).ok()?);
        writer.write_all(header.as_bytes()).ok()?;
        let previous = fs::File::open(&target).ok().and_then(|f| {
            let mut lines = BufReader::new(f).lines();
            match lines.next() {
                Some(Ok(first)) if first == header.trim_end() => Some(lines),
                _ => None,
            }
        });
        let start = SystemTime::now()
            .checked_sub(margin)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        let mut reuse = HashReuse {
            previous,
            peeked: None,
            target,
            tmp,
            writer: Some(writer),
            racy_from_ns: start,
            reused: 0,
        };
        reuse.advance();
        Some(reuse)
    }

    fn advance(&mut self) {
        self.peeked = None;
        let Some(lines) = &mut self.previous else {
            return;
        };
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(row) = parse_row(&line) {
                self.peeked = Some(row);
                return;
            }
        }
        self.previous = None;
    }

    /// The previous row for `path`; paths must be asked in sorted order (rows before `path`
    /// are passed over: those files are gone).
    pub fn previous(&mut self, path: &str) -> Option<Previous> {
        while let Some((p, _)) = &self.peeked {
            match p.as_str().cmp(path) {
                std::cmp::Ordering::Less => self.advance(),
                std::cmp::Ordering::Equal => {
                    let row = self.peeked.take().map(|(_, r)| r);
                    self.advance();
                    return row;
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Adds `path`'s row to the new stat cache (unless it is racy). A failed write drops the
    /// new file; the fingerprint itself goes on.
    pub fn record(&mut self, path: &str, stat: &FileStat, hash: &str, reused: bool) {
        self.reused += usize::from(reused);
        if stat.mtime_ns >= self.racy_from_ns || stat.ctime_ns >= self.racy_from_ns {
            return;
        }
        let Some(w) = &mut self.writer else { return };
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{hash}\n",
            serde_json::Value::from(path),
            stat.size,
            stat.mtime_ns,
            stat.ctime_ns,
            stat.ino,
            stat.dev
        );
        if w.write_all(line.as_bytes()).is_err() {
            self.writer = None;
        }
    }

    /// Files whose hash came from the previous stat cache.
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// Replaces the previous stat cache with the new one (fsynced first); call only after the
    /// fingerprint finished. Best effort: on failure the previous file stays.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(w) = self.writer.take() else {
            return Err(io::Error::other("the new stat cache could not be written"));
        };
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&self.tmp, &self.target)
    }
}

impl Drop for HashReuse {
    fn drop(&mut self) {
        // Committed: the temp file was renamed and this fails harmlessly.
        let _ = fs::remove_file(&self.tmp);
    }
}

fn parse_row(line: &str) -> Option<(String, Previous)> {
    let mut parts = line.rsplitn(7, '\t');
    let hash = parts.next()?.to_owned();
    let dev = parts.next()?.parse().ok()?;
    let ino = parts.next()?.parse().ok()?;
    let ctime_ns = parts.next()?.parse().ok()?;
    let mtime_ns = parts.next()?.parse().ok()?;
    let size = parts.next()?.parse().ok()?;
    let path = serde_json::from_str(parts.next()?).ok()?;
    Some((
        path,
        Previous {
            stat: FileStat {
                size,
                mtime_ns,
                ctime_ns,
                ino,
                dev,
            },
            hash,
        },
    ))
}
