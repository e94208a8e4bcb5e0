//! The remote cache: cache entries shared through an S3-compatible object store, so a team's
//! machines compute each key once (`[cache] remote = "s3://bucket/prefix"`, `--remote`,
//! `VAEPIPE_REMOTE`). Never part of a key.
//!
//! # Layout under the prefix
//!
//! | object | what |
//! |---|---|
//! | `blobs/<blake3>` | one output file's bytes, named by their blake3: written once, shared by every entry with that content, idempotent to rewrite |
//! | `entries/<key>/manifest.json` | the entry's manifest (the local `manifest.json`), uploaded **last** with a conditional create (`If-None-Match: *`) |
//!
//! So an entry is visible only once all its blobs are there; a killed push leaves blobs and no
//! manifest, and the next push completes it (blobs already there are not sent again). Two
//! machines pushing one key leave exactly one manifest: the loser compares its output hashes
//! with the winner's and reports any difference as nondeterminism ([`PushOutcome::Differs`])
//! instead of overwriting.
//!
//! A download ([`Remote::fetch`]) writes into the temp dir of a local pending entry, streaming
//! each blob through blake3 and refusing any whose hash or size differs from the manifest;
//! the local store's ordinary commit then makes it an entry, so a killed download leaves
//! nothing that looks complete and a corrupted blob is never used.
//!
//! # Credentials and endpoint
//!
//! From the standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, web identity, ECS
//! and instance metadata, all through `object_store`), then the shared files
//! `~/.aws/credentials` and `~/.aws/config` for the profile `AWS_PROFILE` (else `default`)
//! for what the environment does not set ([`aws_files`]). An `http://` endpoint on a loopback
//! address is allowed without `AWS_ALLOW_HTTP` (a local MinIO or moto); any other plain-http
//! endpoint needs it.
//!
//! The engine is synchronous; this module owns a small tokio runtime and blocks on it, so no
//! `async` leaks out.

pub mod audit;
pub mod aws_files;
mod transfer;

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::key::StageKey;
use super::store::{Artifact, CacheStore, Lookup, PendingEntry, StoreError};
use crate::progress::ProgressMode;

pub use transfer::{output_differences, PushOutcome};

/// Blobs larger than this go up in multipart uploads of this part size.
pub const MULTIPART_PART: usize = 8 * 1024 * 1024;
/// Transfers in flight at once.
pub const PARALLEL: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("bad remote `{url}`: {why}\n  help: write `[cache] remote = \"s3://BUCKET/PREFIX\"` (or `--remote`, `VAEPIPE_REMOTE`)")]
    BadUrl { url: String, why: String },
    #[error("cannot open the remote `{url}`: {source}\n  help: check AWS_ENDPOINT_URL, AWS_REGION and the credentials (environment or ~/.aws)")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("the remote refused to write `{path}` ({source})\n  help: these credentials may only read; set `push = false` (the default) to use the remote read-only, or use credentials that may write")]
    WriteDenied {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot {what} `{path}` on the remote: {source}")]
    Transfer {
        what: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("remote blob `{path}` is corrupt: {why}; it is not used")]
    Corrupt { path: String, why: String },
    #[error("remote manifest `{path}` is not a valid manifest for its key: {why}")]
    BadManifest { path: String, why: String },
    #[error("the local entry's `{path}` does not match its manifest ({why}); run `vaepipe cache verify` and recompute it")]
    LocalDamaged { path: String, why: String },
    #[error(transparent)]
    Local(#[from] StoreError),
    #[error("cannot {what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

/// A remote cache: an object store (S3 in use, in-memory in unit tests) and the runtime that
/// drives it.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    /// What the user wrote (`s3://bucket/prefix`), for messages.
    url: String,
    progress: ProgressMode,
    /// Whether runs push what they compute (`push = true`); `cache push` pushes regardless.
    push: bool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// `s3://bucket/prefix` → (bucket, prefix without slashes at its ends).
pub fn parse_url(url: &str) -> Result<(String, String), RemoteError> {
    let bad = |why: &str| RemoteError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("only `s3://` remotes are supported"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("the bucket name is empty"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == ".." || p == ".") || prefix.contains("//") {
        return Err(bad("the prefix has an empty, `.` or `..` part"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

fn runtime() -> Result<tokio::runtime::Runtime, RemoteError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vaepipe-remote")
        .enable_all()
        .build()
        .map_err(|source| RemoteError::Io {
            what: "start the remote's runtime",
            path: "tokio".into(),
            source,
        })
}

impl Remote {
    /// Opens `s3://bucket/prefix` with the AWS environment and files (see the module docs).
    /// Nothing is contacted yet.
    pub fn open(url: &str, progress: ProgressMode) -> Result<Remote, RemoteError> {
        let (bucket, prefix) = parse_url(url)?;
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        let files = aws_files::load();
        builder = aws_files::apply(builder, &files);
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .or(files.endpoint_url.clone());
        if let Some(endpoint) = endpoint.as_deref().filter(|e| is_loopback_http(e)) {
            builder = builder.with_endpoint(endpoint).with_allow_http(true);
        }
        let s3 = builder.build().map_err(|source| RemoteError::Open {
            url: url.to_owned(),
            source,
        })?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
        };
        Ok(Remote {
            store: maybe_slowed(store),
            runtime: runtime()?,
            url: url.to_owned(),
            progress,
            push: false,
        })
    }

    /// A remote over any object store (the unit tests' in-memory one).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: &str) -> Result<Remote, RemoteError> {
        Ok(Remote {
            store,
            runtime: runtime()?,
            url: url.to_owned(),
            progress: ProgressMode::Hidden,
            push: false,
        })
    }

    /// Runs push what they compute (and local hits the remote lacks).
    pub fn with_push(mut self, push: bool) -> Remote {
        self.push = push;
        self
    }

    pub fn pushes(&self) -> bool {
        self.push
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Whether the remote has a manifest for `key` (one HEAD request).
    pub fn has(&self, key: &StageKey) -> Result<bool, RemoteError> {
        let path = manifest_path(key);
        self.block_on(async {
            match self.store.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(source) => Err(RemoteError::Transfer {
                    what: "look up",
                    path: path.to_string(),
                    source,
                }),
            }
        })
    }

    /// Every key with a manifest on the remote, sorted.
    pub fn keys(&self) -> Result<Vec<StageKey>, RemoteError> {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from("entries");
        let metas: Vec<object_store::ObjectMeta> = self
            .block_on(self.store.list(Some(&prefix)).try_collect())
            .map_err(|source| RemoteError::Transfer {
                what: "list",
                path: prefix.to_string(),
                source,
            })?;
        let mut keys: Vec<StageKey> = metas
            .iter()
            .filter_map(|m| {
                let mut parts = m.location.parts();
                let (_, key, file) = (parts.next()?, parts.next()?, parts.next()?);
                (file.as_ref() == super::manifest::MANIFEST_FILE)
                    .then(|| StageKey::parse(key.as_ref()))
                    .flatten()
            })
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

/// What [`Remote::pull_pending`] did with a pending local entry.
pub enum Pulled {
    /// Downloaded, verified and committed.
    Committed(Box<Artifact>),
    /// The remote has no entry for the key; the pending entry is handed back untouched.
    Absent(PendingEntry),
    /// The remote's entry was refused (a corrupt blob, a bad manifest, a transfer error); the
    /// pending entry is handed back with its temp dir emptied, to be computed.
    Refused(PendingEntry, RemoteError),
}

/// What [`Remote::pull`] did for one key.
#[derive(Debug)]
pub enum PullOutcome {
    /// The local cache had it already.
    Local,
    Pulled(Box<Artifact>),
    /// The remote has no entry for the key.
    Absent,
}

impl Remote {
    /// Fills `pending` (a local miss under its lock) from the remote and commits it through
    /// the store's ordinary atomic commit; see [`Pulled`].
    pub fn pull_pending(
        &self,
        store: &CacheStore,
        pending: PendingEntry,
        label: &str,
    ) -> Result<Pulled, StoreError> {
        match self.fetch(pending.key(), &pending.tmp_dir, label) {
            Ok(Some(manifest)) => Ok(Pulled::Committed(Box::new(
                store.commit(pending, manifest)?,
            ))),
            Ok(None) => Ok(Pulled::Absent(pending)),
            Err(e) => {
                let tmp = pending.tmp_dir.clone();
                let reset =
                    super::store::remove_tree(&tmp).and_then(|()| std::fs::create_dir_all(&tmp));
                reset.map_err(|source| StoreError::Io {
                    what: "empty",
                    path: tmp,
                    source,
                })?;
                Ok(Pulled::Refused(pending, e))
            }
        }
    }

    /// Brings `key` into the local cache unless it is there (`cache pull`).
    pub fn pull(
        &self,
        store: &CacheStore,
        key: &StageKey,
        label: &str,
    ) -> Result<PullOutcome, RemoteError> {
        let lock = match store.lookup(key, || {})? {
            Lookup::Hit(..) => return Ok(PullOutcome::Local),
            Lookup::Miss(lock) => lock,
        };
        match self.pull_pending(store, store.begin(lock)?, label)? {
            Pulled::Committed(a) => Ok(PullOutcome::Pulled(a)),
            Pulled::Absent(_) => Ok(PullOutcome::Absent),
            Pulled::Refused(_, e) => Err(e),
        }
    }
}

pub(crate) fn manifest_path(key: &StageKey) -> ObjectPath {
    ObjectPath::from(format!(
        "entries/{}/{}",
        key.as_str(),
        super::manifest::MANIFEST_FILE
    ))
}

pub(crate) fn blob_path(blake3: &str) -> ObjectPath {
    ObjectPath::from(format!("blobs/{blake3}"))
}

/// `http://127.0.0.1:9000`, `http://localhost`, `http://[::1]:…`.
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `VAEPIPE_REMOTE_PUT_DELAY_MS`: waits that long before each upload, to stand in for a slow
/// link (the kill-mid-push test uses it). Unset in normal use.
fn maybe_slowed(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let delay = std::env::var("VAEPIPE_REMOTE_PUT_DELAY_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match delay {
        Some(ms) if ms > 0 => {
            let config = object_store::throttle::ThrottleConfig {
                wait_put_per_call: Duration::from_millis(ms),
                ..Default::default()
            };
            Arc::new(object_store::throttle::ThrottledStore::new(store, config))
        }
        _ => store,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_bucket_and_prefix() {
        assert_eq!(
            parse_url("s3://team-cache/vaepipe/v1/").unwrap(),
            ("team-cache".into(), "vaepipe/v1".into())
        );
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), String::new()));
        for bad in ["gs://b/p", "s3:///p", "s3://b/../x", "b/p"] {
            assert!(parse_url(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn only_loopback_http_is_allowed_implicitly() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://localhost/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://minio.lab:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
    }
}
