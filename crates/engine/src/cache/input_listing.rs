//! Input fingerprints as the store keeps them: the walk streams each listing line into a temp
//! file under `tmp/`, which becomes `fingerprints/<digest>.tsv` (fsynced, renamed) once the
//! digest is known, or is dropped when that listing is already stored; by content, the walk
//! also reads and rewrites the input's stat cache (`stat-cache/`, see `stat_cache.rs`).
//! Listings are diffed as two streams read line by line, so neither fingerprinting nor
//! `plan`'s "3 files modified" holds a listing in memory.

use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fingerprint::{
    diff_listings, err, fingerprint_into, parse_line, FingerprintError, FingerprintMode,
    InputFingerprint, ListingDiff,
};
use super::stat_cache::{HashReuse, RACY_MARGIN};
use super::store::CacheStore;

/// Temp files of a walk under `tmp/` start with this; `gc` removes old ones.
pub(crate) const TMP_PREFIX: &str = "fingerprint.";

/// A walk's temp file older than this belongs to a dead run.
pub(crate) const TMP_GRACE: Duration = Duration::from_secs(3600);

/// Whether a content fingerprint may take unchanged files' hashes from the stat cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFiles {
    /// Hash only files whose stat changed (planning).
    Changed,
    /// Hash every file (`lock`, `run --locked`: what they record is read from the bytes).
    All,
}

impl CacheStore {
    fn walk_tmp(&self, what: &str) -> PathBuf {
        self.tmp_file(&format!("{TMP_PREFIX}{what}"))
    }

    fn stat_cache_dir(&self) -> PathBuf {
        self.root().join("stat-cache")
    }

    fn listing_path(&self, digest: &str) -> PathBuf {
        self.root()
            .join("fingerprints")
            .join(format!("{digest}.tsv"))
    }

    /// Fingerprints `path` and stores its listing under the digest (once).
    pub fn fingerprint_input(
        &self,
        path: &Path,
        mode: FingerprintMode,
        hash: HashFiles,
    ) -> Result<InputFingerprint, FingerprintError> {
        Ok(self
            .fingerprint_input_with(path, mode, hash, RACY_MARGIN)?
            .0)
    }

    /// [`CacheStore::fingerprint_input`], also saying how many hashes the stat cache gave.
    fn fingerprint_input_with(
        &self,
        path: &Path,
        mode: FingerprintMode,
        hash: HashFiles,
        racy_margin: Duration,
    ) -> Result<(InputFingerprint, usize), FingerprintError> {
        let tmp = self.walk_tmp("listing");
        let written = (|| {
            let file = fs::File::create(&tmp).map_err(err(&tmp))?;
            let mut listing = BufWriter::with_capacity(1 << 16, file);
            let mut reuse = match (mode, hash) {
                (FingerprintMode::Content, HashFiles::Changed) => HashReuse::open_with_margin(
                    &self.stat_cache_dir(),
                    path,
                    self.walk_tmp("stat-cache"),
                    racy_margin,
                ),
                _ => None,
            };
            let fp = fingerprint_into(path, mode, &mut listing, reuse.as_mut())?;
            let reused = reuse.as_ref().map_or(0, HashReuse::reused);
            if let Some(reuse) = reuse {
                tracing::debug!(
                    "{}: {} of {} hashes from the stat cache",
                    path.display(),
                    reuse.reused(),
                    fp.files
                );
                if let Err(e) = reuse.commit() {
                    tracing::warn!("cannot update the stat cache of {}: {e}", path.display());
                }
            }
            let target = self.listing_path(&fp.digest);
            if !target.exists() {
                let file = listing
                    .into_inner()
                    .map_err(|e| err(&tmp)(e.into_error()))?;
                file.sync_all().map_err(err(&tmp))?;
                fs::rename(&tmp, &target).map_err(err(&target))?;
            }
            Ok((fp, reused))
        })();
        let _ = fs::remove_file(&tmp);
        written
    }

    /// How the listing behind digest `new` differs from the one behind `old`; `None` when
    /// either is not stored.
    pub fn diff_listings(&self, old: &str, new: &str) -> Option<ListingDiff> {
        let lines = |digest: &str| -> io::Result<_> {
            let file = fs::File::open(self.listing_path(digest))?;
            Ok(BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| parse_line(&l)))
        };
        Some(diff_listings(lines(old).ok()?, lines(new).ok()?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::super::fingerprint::fingerprint;
    use super::*;

    /// Files older than this are recorded in the stat cache; tests wait it out.
    const MARGIN: Duration = Duration::from_millis(30);

    struct Fixture {
        _dir: tempfile::TempDir,
        data: PathBuf,
        store: CacheStore,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        for (p, text) in [
            ("id1/a.png", "aaaa"),
            ("id1/b.png", "bbbb"),
            ("id2/c.png", "cccc"),
            ("id2/d.png", "dddd"),
            ("z.txt", "zz"),
        ] {
            let full = data.join(p);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, text).unwrap();
        }
        let store = CacheStore::open(&dir.path().join("cache")).unwrap();
        settle();
        Fixture {
            _dir: dir,
            data,
            store,
        }
    }

    /// Lets the files' mtimes and ctimes fall behind the racy margin.
    fn settle() {
        std::thread::sleep(MARGIN * 3);
    }

    impl Fixture {
        /// A fingerprint by content, and how many hashes came from the stat cache.
        fn walk(
            &self,
            hash: HashFiles,
            margin: Duration,
        ) -> Result<(InputFingerprint, usize), FingerprintError> {
            self.store
                .fingerprint_input_with(&self.data, FingerprintMode::Content, hash, margin)
        }

        /// A planning fingerprint by content.
        fn planned(&self) -> (InputFingerprint, usize) {
            self.walk(HashFiles::Changed, MARGIN).unwrap()
        }

        fn stat_cache_files(&self) -> Vec<PathBuf> {
            match fs::read_dir(self.store.stat_cache_dir()) {
                Ok(d) => d.map(|e| e.unwrap().path()).collect(),
                Err(_) => Vec::new(),
            }
        }

        fn tmp_files(&self) -> Vec<String> {
            fs::read_dir(self.store.root().join("tmp"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        }

        /// The digest of every byte read afresh: what the stat cache must agree with.
        fn truth(&self) -> String {
            fingerprint(&self.data, FingerprintMode::Content)
                .unwrap()
                .digest
        }
    }

    #[test]
    fn unchanged_files_take_their_hashes_from_the_stat_cache() {
        let f = fixture();
        let (first, reused) = f.planned();
        assert_eq!(reused, 0, "nothing to reuse on the first walk");
        assert_eq!(f.stat_cache_files().len(), 1);
        let (second, reused) = f.planned();
        assert_eq!(reused, 5, "every file unchanged");
        assert_eq!(second.digest, first.digest);
        assert_eq!(second.digest, f.truth());
        assert!(f.tmp_files().is_empty(), "{:?}", f.tmp_files());
    }

    #[test]
    fn added_removed_changed_and_renamed_files_are_hashed_again() {
        let f = fixture();
        let (first, _) = f.planned();
        fs::write(f.data.join("id1/a0.png"), "new!").unwrap(); // added
        fs::remove_file(f.data.join("id2/d.png")).unwrap(); // removed
        fs::write(f.data.join("id1/b.png"), "BBBBB").unwrap(); // changed (size too)
        fs::rename(f.data.join("id2/c.png"), f.data.join("id3.png")).unwrap(); // renamed
        settle();
        let (second, reused) = f.planned();
        assert_eq!(second.digest, f.truth());
        assert_ne!(second.digest, first.digest);
        // a.png and z.txt are untouched; the other four are new, gone, changed or moved.
        assert_eq!(reused, 2);
        assert_eq!(second.files, 5);
        let diff = f
            .store
            .diff_listings(&first.digest, &second.digest)
            .unwrap();
        assert_eq!((diff.added, diff.removed, diff.modified), (2, 2, 1));
        // The rewritten stat cache serves the next walk whole.
        let (third, reused) = f.planned();
        assert_eq!((third.digest, reused), (second.digest, 5));
    }

    /// Same size, mtime set back to what it was: only the ctime shows the edit, and the
    /// stat cache must not serve the old hash.
    #[test]
    fn an_edit_that_keeps_size_and_mtime_is_not_served_from_the_stat_cache() {
        let f = fixture();
        let path = f.data.join("id2/c.png");
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        f.planned();
        fs::write(&path, "CCCC").unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        let (fp, reused) = f.planned();
        assert_eq!(fp.digest, f.truth());
        assert_eq!(reused, 4);
    }

    /// A file changed just before (or during) the walk has a timestamp the clock's tick may
    /// not tell apart from a later edit: it is hashed, not recorded.
    #[test]
    fn files_younger_than_the_margin_are_not_recorded() {
        let f = fixture();
        let long = Duration::from_secs(600);
        let walk = |margin| f.walk(HashFiles::Changed, margin).unwrap();
        walk(long);
        let (fp, reused) = walk(long);
        assert_eq!(
            (fp.digest, reused),
            (f.truth(), 0),
            "all five are too young"
        );
        walk(MARGIN);
        assert_eq!(walk(MARGIN).1, 5);
    }

    /// A walk that fails part-way (here a dangling link; a kill is the same: no rename) keeps
    /// the previous stat cache byte for byte and leaves no temp file.
    #[test]
    fn an_interrupted_walk_leaves_the_previous_stat_cache_whole() {
        let f = fixture();
        f.planned();
        let [cache_file] = &f.stat_cache_files()[..] else {
            panic!("one stat cache expected")
        };
        let before = fs::read(cache_file).unwrap();
        std::os::unix::fs::symlink(f.data.join("missing"), f.data.join("id1/broken.png")).unwrap();
        let err = f.walk(HashFiles::Changed, MARGIN).unwrap_err();
        assert!(err.to_string().contains("broken.png"), "{err}");
        assert_eq!(fs::read(cache_file).unwrap(), before);
        assert!(f.tmp_files().is_empty(), "{:?}", f.tmp_files());
        fs::remove_file(f.data.join("id1/broken.png")).unwrap();
        let (fp, reused) = f.planned();
        assert_eq!((fp.digest, reused), (f.truth(), 5));
    }

    /// A stat cache cut short or garbled (a disk error, a hand edit) costs hashing, never a
    /// wrong digest.
    #[test]
    fn a_damaged_stat_cache_is_only_a_miss() {
        let f = fixture();
        f.planned();
        let [cache_file] = &f.stat_cache_files()[..] else {
            panic!("one stat cache expected")
        };
        let text = fs::read_to_string(cache_file).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(1, 3); // out of order
        lines[2] = "\"id1/b.png\"\tnot a row";
        fs::write(cache_file, lines.join("\n")).unwrap();
        let (fp, _) = f.planned();
        assert_eq!(fp.digest, f.truth());
    }

    #[test]
    fn lock_hashes_every_file_and_leaves_the_stat_cache_alone() {
        let f = fixture();
        f.planned();
        let [cache_file] = &f.stat_cache_files()[..] else {
            panic!("one stat cache expected")
        };
        let before = fs::read(cache_file).unwrap();
        fs::write(f.data.join("z.txt"), "yy").unwrap();
        let (fp, reused) = f.walk(HashFiles::All, MARGIN).unwrap();
        assert_eq!((fp.digest, reused), (f.truth(), 0));
        assert_eq!(fs::read(cache_file).unwrap(), before);
    }

    #[test]
    fn the_listing_is_stored_once_under_its_digest() {
        let f = fixture();
        let fp = f
            .store
            .fingerprint_input(&f.data, FingerprintMode::Stat, HashFiles::Changed)
            .unwrap();
        let text = fs::read_to_string(f.store.listing_path(&fp.digest)).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.starts_with("\"id1/a.png\"\t4\t"), "{text}");
        let again = f
            .store
            .fingerprint_input(&f.data, FingerprintMode::Stat, HashFiles::Changed)
            .unwrap();
        assert_eq!(again.digest, fp.digest);
        assert!(f.tmp_files().is_empty(), "{:?}", f.tmp_files());
    }
}
