//! The content-addressed cache: keys ([`key`], whose module docs hold the key table), input
//! fingerprints, the on-disk store, dirty reasons, families of extendable stages (warm
//! starts), maintenance (gc, verify), and the shared remote cache on S3 ([`remote`]).

pub mod dirty;
pub mod family;
pub mod fingerprint;
pub mod gc;
mod input_listing;
pub mod key;
pub mod manifest;
pub mod remote;
pub mod stat_cache;
pub mod store;
mod walk;

pub use dirty::DirtyReason;
pub use family::{FamilyKey, FamilyRecord, WarmStartRecord};
pub use fingerprint::{FingerprintMode, InputFingerprint, ListingDiff};
pub use input_listing::HashFiles;
pub use key::{KeyPreimage, StageKey};
pub use manifest::Manifest;
pub use store::{Artifact, CacheStore, EntryLock, Lookup, PendingEntry, StoreError};
