//! `vaepipe cache verify --remote`: reads remote manifests (all, or a random sample) and
//! re-hashes every blob they name, so a flipped byte or a missing blob on the remote is found
//! before a run trips over it. Blobs shared by several entries are checked once.

use std::collections::BTreeSet;

use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::{blob_path, Remote, RemoteError};
use crate::cache::key::StageKey;
use crate::cache::manifest::Manifest;

/// What an audit found.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub entries: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// One sentence per problem, naming the entry and the object.
    pub problems: Vec<String>,
    /// The manifests that were read, by key (for `--recompute`).
    pub manifests: Vec<Manifest>,
}

/// `n` of `keys` in a random order (all of them when `n` is `None` or larger); `seed` picks
/// the order (a splitmix64 shuffle, so a given seed always picks the same sample).
pub fn sample<T: Clone>(items: &[T], n: Option<usize>, seed: u64) -> Vec<T> {
    let mut items = items.to_vec();
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items.truncate(n.unwrap_or(usize::MAX));
    items
}

impl Remote {
    /// Checks the entries `keys` (their manifests, then each blob's size and blake3).
    pub fn audit(&self, keys: &[StageKey]) -> Result<AuditReport, RemoteError> {
        let mut report = AuditReport::default();
        let mut seen = BTreeSet::new();
        let mut blobs = Vec::new();
        for key in keys {
            report.entries += 1;
            match self.manifest(key) {
                Ok(Some(m)) => {
                    for out in &m.outputs {
                        if seen.insert(out.blake3.clone()) {
                            blobs.push((
                                key.clone(),
                                out.path.clone(),
                                out.blake3.clone(),
                                out.size,
                            ));
                        }
                    }
                    report.manifests.push(m);
                }
                Ok(None) => report
                    .problems
                    .push(format!("entry {}…: its manifest is gone", key.short())),
                Err(e) => report.problems.push(format!("entry {}…: {e}", key.short())),
            }
        }
        let results: Vec<Result<u64, String>> = self.block_on(
            futures::stream::iter(blobs.iter())
                .map(|(key, file, hash, size)| async move {
                    self.check_blob(hash, *size)
                        .await
                        .map_err(|why| format!("entry {}… `{file}`: {why}", key.short()))
                })
                .buffer_unordered(super::PARALLEL)
                .collect(),
        );
        for r in results {
            match r {
                Ok(bytes) => {
                    report.blobs += 1;
                    report.bytes += bytes;
                }
                Err(p) => report.problems.push(p),
            }
        }
        report.problems.sort();
        Ok(report)
    }

    async fn check_blob(&self, hash: &str, size: u64) -> Result<u64, String> {
        let path = blob_path(hash);
        let got = match self.store().get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(format!("blob `{path}` is missing"))
            }
            Err(e) => return Err(format!("cannot download blob `{path}`: {e}")),
        };
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("cannot download blob `{path}`: {e}"))?;
            n += chunk.len() as u64;
            hasher.update(&chunk);
        }
        if n != size {
            return Err(format!(
                "blob `{path}` has {n} bytes, the manifest says {size}"
            ));
        }
        if hasher.finalize().to_hex().as_str() != hash {
            return Err(format!("blob `{path}` does not hash to its name (corrupt)"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_a_seeded_subset() {
        let all: Vec<u32> = (0..20).collect();
        let a = sample(&all, Some(5), 7);
        assert_eq!(a.len(), 5);
        assert_eq!(a, sample(&all, Some(5), 7), "same seed, same sample");
        assert_ne!(a, sample(&all, Some(5), 8), "another seed, another sample");
        let mut whole = sample(&all, None, 3);
        whole.sort();
        assert_eq!(whole, all);
    }
}
