//! Moving one entry: [`Remote::push`] (blobs first, deduplicated and in parallel, large ones
//! multipart; the manifest last with a conditional create) and [`Remote::fetch`] (the manifest,
//! then every blob streamed through blake3 into a local temp dir, refused on any mismatch).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutPayload, WriteMultipart};

use super::{blob_path, manifest_path, Remote, RemoteError, MULTIPART_PART, PARALLEL};
use crate::cache::key::StageKey;
use crate::cache::manifest::{Manifest, MANIFEST_FILE};
use crate::cache::store::Artifact;
use crate::progress::Progress;

/// The largest manifest a fetch reads (a real one is a few KiB).
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// What a push did.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// The entry is now on the remote: `blobs` files (`bytes` bytes) were sent, the others were
    /// there already.
    Uploaded { blobs: usize, bytes: u64 },
    /// The remote already had this key, with the same outputs.
    AlreadyThere,
    /// The remote already had this key with *different* outputs: the stage is not
    /// deterministic. The remote's entry is kept; each line names a differing file.
    Differs(Vec<String>),
}

/// How `local` and `remote` manifests of one key differ in their outputs (empty: not at all).
pub fn output_differences(local: &Manifest, remote: &Manifest) -> Vec<String> {
    let map = |m: &Manifest| -> BTreeMap<String, String> {
        m.outputs
            .iter()
            .map(|o| (o.path.clone(), o.blake3.clone()))
            .collect()
    };
    let (l, r) = (map(local), map(remote));
    let mut out = Vec::new();
    for (path, hash) in &l {
        match r.get(path) {
            None => out.push(format!("`{path}` exists here, not on the remote")),
            Some(h) if h != hash => out.push(format!(
                "`{path}`: blake3 {}… here, {}… on the remote",
                &hash[..hash.len().min(12)],
                &h[..h.len().min(12)]
            )),
            Some(_) => {}
        }
    }
    for path in r.keys().filter(|p| !l.contains_key(*p)) {
        out.push(format!("`{path}` exists on the remote, not here"));
    }
    out
}

fn transfer_err<'a>(
    what: &'static str,
    path: &'a object_store::path::Path,
) -> impl FnOnce(object_store::Error) -> RemoteError + 'a {
    move |source| RemoteError::Transfer {
        what,
        path: path.to_string(),
        source,
    }
}

/// A failed write: permission problems get the read-only explanation.
fn write_err(
    path: &object_store::path::Path,
) -> impl FnOnce(object_store::Error) -> RemoteError + '_ {
    move |source| match source {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => RemoteError::WriteDenied {
            path: path.to_string(),
            source,
        },
        source => RemoteError::Transfer {
            what: "upload",
            path: path.to_string(),
            source,
        },
    }
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RemoteError + 'a {
    move |source| RemoteError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn check_cancelled() -> Result<(), RemoteError> {
    if crate::signal::cancel_flag().load(Ordering::Relaxed) {
        return Err(RemoteError::Interrupted);
    }
    Ok(())
}

/// An output path from a manifest that may come from elsewhere: relative, plain parts only, not
/// the manifest's own name at the top.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.is_empty() && path != MANIFEST_FILE).then(|| p.to_path_buf())
}

fn is_blake3_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Remote {
    /// The remote's manifest for `key`, or `None` when it has none. Checked: it must name
    /// `key` and its preimage must hash to it.
    pub fn manifest(&self, key: &StageKey) -> Result<Option<Manifest>, RemoteError> {
        let path = manifest_path(key);
        let bytes = self.block_on(async {
            let got = match self.store().get(&path).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(transfer_err("download", &path)(e)),
            };
            if got.meta.size > MAX_MANIFEST_BYTES {
                return Err(RemoteError::BadManifest {
                    path: path.to_string(),
                    why: format!("{} bytes is not a manifest", got.meta.size),
                });
            }
            got.bytes()
                .await
                .map(Some)
                .map_err(transfer_err("download", &path))
        })?;
        let Some(bytes) = bytes else { return Ok(None) };
        let bad = |why: String| RemoteError::BadManifest {
            path: path.to_string(),
            why,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if manifest.key != *key || manifest.preimage.key() != *key {
            return Err(bad(
                "it names another key, or its preimage does not hash to its key".into(),
            ));
        }
        for out in &manifest.outputs {
            if safe_relative(&out.path).is_none() || !is_blake3_hex(&out.blake3) {
                return Err(bad(format!(
                    "output `{}` has an unsafe path or a bad hash",
                    out.path.escape_debug()
                )));
            }
        }
        Ok(Some(manifest))
    }

    /// Uploads a committed local entry: every blob the remote lacks (checked against the
    /// manifest's blake3 as it is read, so a damaged local file is never published), then the
    /// manifest with a conditional create. Idempotent; a lost race is compared, never
    /// overwritten.
    pub fn push(&self, artifact: &Artifact, label: &str) -> Result<PushOutcome, RemoteError> {
        if let Some(theirs) = self.manifest(&artifact.key)? {
            return Ok(compared(&artifact.manifest, &theirs));
        }
        let mut blobs: BTreeMap<&str, (PathBuf, u64)> = BTreeMap::new();
        for out in &artifact.manifest.outputs {
            blobs
                .entry(out.blake3.as_str())
                .or_insert_with(|| (artifact.dir.join(&out.path), out.size));
        }
        let total = blobs.values().map(|(_, s)| *s).sum();
        let progress = Progress::new(&format!("{label} (upload, bytes)"), total, 0, self.progress);
        let sent: Vec<Option<u64>> = self.block_on(
            futures::stream::iter(blobs.iter())
                .map(|(hash, (file, size))| self.upload_blob(hash, file, *size, &progress))
                .buffer_unordered(PARALLEL)
                .try_collect(),
        )?;
        progress.finish_and_clear();
        check_cancelled()?;
        let published = self.publish_manifest(artifact)?;
        Ok(match published {
            PushOutcome::AlreadyThere | PushOutcome::Differs(_) => published,
            PushOutcome::Uploaded { .. } => PushOutcome::Uploaded {
                blobs: sent.iter().flatten().count(),
                bytes: sent.iter().flatten().sum(),
            },
        })
    }

    /// The last step of [`Remote::push`]: uploads the manifest with a conditional create, so
    /// of two machines pushing one key exactly one manifest lands; the loser compares outputs.
    /// Public so a test can play the loser of the race directly.
    #[doc(hidden)]
    pub fn publish_manifest(&self, artifact: &Artifact) -> Result<PushOutcome, RemoteError> {
        let manifest_file = artifact.dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&manifest_file).map_err(io_err("read", &manifest_file))?;
        let path = manifest_path(&artifact.key);
        let put = self.block_on(self.store().put_opts(
            &path,
            PutPayload::from(bytes),
            PutMode::Create.into(),
        ));
        match put {
            Ok(_) => Ok(PushOutcome::Uploaded { blobs: 0, bytes: 0 }),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                // Another machine pushed the key since we looked.
                match self.manifest(&artifact.key)? {
                    Some(theirs) => Ok(compared(&artifact.manifest, &theirs)),
                    None => Err(RemoteError::BadManifest {
                        path: path.to_string(),
                        why: "the remote refused to create it but has none".into(),
                    }),
                }
            }
            Err(e) => Err(write_err(&path)(e)),
        }
    }

    /// Sends `file` as `blobs/<hash>` unless the remote has it; `Some(bytes)` when sent.
    async fn upload_blob(
        &self,
        hash: &str,
        file: &Path,
        size: u64,
        progress: &Progress,
    ) -> Result<Option<u64>, RemoteError> {
        check_cancelled()?;
        let path = blob_path(hash);
        match self.store().head(&path).await {
            Ok(meta) if meta.size == size => {
                progress.inc(size);
                return Ok(None);
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(transfer_err("look up", &path)(e)),
        }
        let damaged = |why: String| RemoteError::LocalDamaged {
            path: file.display().to_string(),
            why,
        };
        let mut reader = std::fs::File::open(file).map_err(io_err("read", file))?;
        let mut hasher = blake3::Hasher::new();
        if size <= MULTIPART_PART as u64 {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(io_err("read", file))?;
            hasher.update(&bytes);
            if hasher.finalize().to_hex().as_str() != hash {
                return Err(damaged("its blake3 differs".into()));
            }
            let n = bytes.len() as u64;
            self.store()
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(write_err(&path))?;
            progress.inc(n);
            return Ok(Some(n));
        }
        let upload = self
            .store()
            .put_multipart(&path)
            .await
            .map_err(write_err(&path))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            if let Err(e) = check_cancelled() {
                let _ = writer.abort().await;
                return Err(e);
            }
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(write_err(&path)(e));
            }
            let read = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(r) => r,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io_err("read", file)(e));
                }
            };
            hasher.update(&buf[..read]);
            writer.write(&buf[..read]);
            n += read as u64;
            progress.inc(read as u64);
        }
        if hasher.finalize().to_hex().as_str() != hash || n != size {
            let _ = writer.abort().await;
            return Err(damaged("its blake3 or size differs".into()));
        }
        writer.finish().await.map_err(write_err(&path))?;
        Ok(Some(n))
    }

    /// Downloads `key`'s entry into `dest` (an empty temp dir of a pending local entry):
    /// `None` when the remote has no manifest for it. Each blob is hashed as it streams and
    /// refused ([`RemoteError::Corrupt`]) when its blake3 or size differs from the manifest;
    /// then `dest` holds exactly the outputs and the caller commits it with the manifest.
    pub fn fetch(
        &self,
        key: &StageKey,
        dest: &Path,
        label: &str,
    ) -> Result<Option<Manifest>, RemoteError> {
        let Some(manifest) = self.manifest(key)? else {
            return Ok(None);
        };
        let total = manifest.outputs.iter().map(|o| o.size).sum();
        let progress = Progress::new(
            &format!("{label} (download, bytes)"),
            total,
            0,
            self.progress,
        );
        self.block_on(
            futures::stream::iter(manifest.outputs.iter())
                .map(|out| {
                    let file = dest.join(safe_relative(&out.path).unwrap_or_default());
                    self.download_blob(&out.blake3, out.size, file, &progress)
                })
                .buffer_unordered(PARALLEL)
                .try_collect::<Vec<()>>(),
        )?;
        progress.finish_and_clear();
        Ok(Some(manifest))
    }

    async fn download_blob(
        &self,
        hash: &str,
        size: u64,
        file: PathBuf,
        progress: &Progress,
    ) -> Result<(), RemoteError> {
        check_cancelled()?;
        let path = blob_path(hash);
        let corrupt = |why: String| RemoteError::Corrupt {
            path: path.to_string(),
            why,
        };
        let got = self
            .store()
            .get(&path)
            .await
            .map_err(transfer_err("download", &path))?;
        if got.meta.size != size {
            return Err(corrupt(format!(
                "{} bytes, the manifest says {size}",
                got.meta.size
            )));
        }
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let mut out = std::fs::File::create(&file).map_err(io_err("write", &file))?;
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            check_cancelled()?;
            let chunk = chunk.map_err(transfer_err("download", &path))?;
            n += chunk.len() as u64;
            if n > size {
                return Err(corrupt(format!(
                    "more than the {size} bytes the manifest says"
                )));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(io_err("write", &file))?;
            progress.inc(chunk.len() as u64);
        }
        if n != size {
            return Err(corrupt(format!("{n} bytes, the manifest says {size}")));
        }
        let found = hasher.finalize().to_hex();
        if found.as_str() != hash {
            return Err(corrupt(format!(
                "its content hashes to {}…",
                &found.as_str()[..12]
            )));
        }
        out.sync_all().map_err(io_err("sync", &file))?;
        Ok(())
    }
}

fn compared(ours: &Manifest, theirs: &Manifest) -> PushOutcome {
    let diffs = output_differences(ours, theirs);
    if diffs.is_empty() {
        PushOutcome::AlreadyThere
    } else {
        PushOutcome::Differs(diffs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use std::fs;
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    use super::*;
    use crate::cache::remote::{PullOutcome, Pulled};
    use crate::cache::store::tests as store_tests;
    use crate::cache::store::{test_dir, CacheStore, Lookup};

    /// Commits an entry for preimage `n` whose files are `files` (path, bytes).
    fn committed(store: &CacheStore, n: u64, files: &[(&str, &[u8])]) -> Artifact {
        let preimage = store_tests::preimage(n);
        let key = preimage.key();
        let Lookup::Miss(lock) = store.lookup(&key, || {}).unwrap() else {
            panic!("expected a miss")
        };
        let pending = store.begin(lock).unwrap();
        for (path, bytes) in files {
            let file = pending.tmp_dir.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, bytes).unwrap();
        }
        store
            .commit(pending, store_tests::manifest(&key, preimage))
            .unwrap()
    }

    fn memory() -> (Arc<InMemory>, Remote) {
        let mem = Arc::new(InMemory::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        (mem, Remote::from_store(store, "memory://test").unwrap())
    }

    fn objects(remote: &Remote, under: &str) -> Vec<String> {
        let p = object_store::path::Path::from(under);
        let metas: Vec<object_store::ObjectMeta> = remote
            .block_on(remote.store().list(Some(&p)).try_collect())
            .unwrap();
        metas.iter().map(|m| m.location.to_string()).collect()
    }

    #[test]
    fn push_then_pull_round_trips_and_shares_equal_blobs() {
        let dir = test_dir();
        let here = CacheStore::open(&dir.path().join("a")).unwrap();
        let (_, remote) = memory();
        let one = committed(&here, 1, &[("x.bin", b"same"), ("sub/y.txt", b"only one")]);
        let two = committed(&here, 2, &[("z.bin", b"same")]);
        assert_eq!(
            remote.push(&one, "one").unwrap(),
            PushOutcome::Uploaded {
                blobs: 2,
                bytes: 12
            }
        );
        assert_eq!(
            remote.push(&two, "two").unwrap(),
            PushOutcome::Uploaded { blobs: 0, bytes: 0 },
            "the shared blob is not sent again"
        );
        assert_eq!(objects(&remote, "blobs").len(), 2);
        assert_eq!(remote.push(&one, "one").unwrap(), PushOutcome::AlreadyThere);
        assert_eq!(remote.keys().unwrap().len(), 2);

        let there = CacheStore::open(&dir.path().join("b")).unwrap();
        let PullOutcome::Pulled(got) = remote.pull(&there, &one.key, "one").unwrap() else {
            panic!("expected a download")
        };
        assert_eq!(fs::read(got.dir.join("sub/y.txt")).unwrap(), b"only one");
        assert!(output_differences(&got.manifest, &one.manifest).is_empty());
        assert!(there.get(&one.key).is_some(), "committed like any entry");
        assert!(matches!(
            remote.pull(&there, &one.key, "one").unwrap(),
            PullOutcome::Local
        ));
        let absent = store_tests::preimage(3).key();
        assert!(matches!(
            remote.pull(&there, &absent, "three").unwrap(),
            PullOutcome::Absent
        ));
    }

    #[test]
    fn the_loser_of_a_race_compares_and_never_overwrites() {
        let dir = test_dir();
        let (_, remote) = memory();
        let a = CacheStore::open(&dir.path().join("a")).unwrap();
        let b = CacheStore::open(&dir.path().join("b")).unwrap();
        let ours = committed(&a, 1, &[("out.bin", b"heads")]);
        let same = committed(&b, 1, &[("out.bin", b"heads")]);
        remote.push(&ours, "s").unwrap();
        // `b` looked before `a`'s manifest landed, so it goes straight to the create.
        assert_eq!(
            remote.publish_manifest(&same).unwrap(),
            PushOutcome::AlreadyThere
        );
        let c = CacheStore::open(&dir.path().join("c")).unwrap();
        let other = committed(&c, 1, &[("out.bin", b"tails")]);
        let PushOutcome::Differs(diffs) = remote.publish_manifest(&other).unwrap() else {
            panic!("expected a nondeterminism report")
        };
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].contains("out.bin"), "{diffs:?}");
        let kept = remote.manifest(&ours.key).unwrap().unwrap();
        assert!(
            output_differences(&kept, &ours.manifest).is_empty(),
            "the winner's stays"
        );
    }

    #[test]
    fn a_corrupt_or_short_blob_is_refused_and_leaves_the_pending_entry_empty() {
        let dir = test_dir();
        let (mem, remote) = memory();
        let a = CacheStore::open(&dir.path().join("a")).unwrap();
        let art = committed(&a, 1, &[("out.bin", b"0123456789"), ("ok.txt", b"fine")]);
        remote.push(&art, "s").unwrap();
        let blob = blob_path(
            &art.manifest
                .outputs
                .iter()
                .find(|o| o.path == "out.bin")
                .unwrap()
                .blake3,
        );
        let b = CacheStore::open(&dir.path().join("b")).unwrap();
        for bad in [&b"0123456788"[..], &b"012345678"[..], &b"0123456789!"[..]] {
            remote
                .block_on(mem.put(&blob, PutPayload::from(bad.to_vec())))
                .unwrap();
            let Lookup::Miss(lock) = b.lookup(&art.key, || {}).unwrap() else {
                panic!("expected a miss")
            };
            let pending = b.begin(lock).unwrap();
            match remote.pull_pending(&b, pending, "s").unwrap() {
                Pulled::Refused(pending, RemoteError::Corrupt { .. }) => {
                    assert_eq!(fs::read_dir(&pending.tmp_dir).unwrap().count(), 0);
                }
                Pulled::Refused(_, e) => panic!("refused for another reason: {e}"),
                _ => panic!("a corrupt blob was accepted"),
            }
            assert!(b.get(&art.key).is_none());
        }
    }

    #[test]
    fn a_hostile_manifest_is_refused() {
        let dir = test_dir();
        let (mem, remote) = memory();
        let a = CacheStore::open(&dir.path().join("a")).unwrap();
        let art = committed(&a, 1, &[("out.bin", b"x")]);
        let mut m = art.manifest.clone();
        m.outputs[0].path = "../../escape".into();
        let path = manifest_path(&art.key);
        remote
            .block_on(mem.put(&path, PutPayload::from(serde_json::to_vec(&m).unwrap())))
            .unwrap();
        assert!(matches!(
            remote.manifest(&art.key),
            Err(RemoteError::BadManifest { .. })
        ));
        // A manifest stored under another entry's key is not that entry.
        let other = store_tests::preimage(2).key();
        remote
            .block_on(mem.put(
                &manifest_path(&other),
                PutPayload::from(serde_json::to_vec(&art.manifest).unwrap()),
            ))
            .unwrap();
        assert!(matches!(
            remote.manifest(&other),
            Err(RemoteError::BadManifest { .. })
        ));
    }

    #[test]
    fn a_damaged_local_file_is_never_published() {
        let dir = test_dir();
        let (_, remote) = memory();
        let a = CacheStore::open(&dir.path().join("a")).unwrap();
        let mut art = committed(&a, 1, &[("out.bin", b"abc")]);
        art.manifest.outputs[0].blake3 = blake3::hash(b"abd").to_hex().to_string();
        assert!(matches!(
            remote.push(&art, "s"),
            Err(RemoteError::LocalDamaged { .. })
        ));
        assert!(objects(&remote, "blobs").is_empty());
        assert!(remote.keys().unwrap().is_empty());
    }
}
