//! `manifest.json`: the commit marker and record of a cache entry.
//!
//! An entry directory counts as committed only if its manifest parses, names the entry's own
//! key, and its stored preimage re-hashes to that key. The manifest records everything needed to
//! explain and reproduce the entry (see the table in `key.rs`); fields outside the preimage are
//! recorded, never hashed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::family::{FamilyRecord, WarmStartRecord};
use super::key::{KeyPreimage, StageKey};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_format: u32,
    pub key: StageKey,
    /// The stage (and experiment) that first computed this entry; other stages with the same key
    /// share it.
    pub stage: String,
    pub experiment: String,
    pub kind: String,
    pub kind_version: u32,
    /// Resolved params (the same value as `preimage.params`, here for readers).
    pub params: serde_json::Value,
    /// What was hashed into `key`.
    pub preimage: KeyPreimage,
    /// By role.
    pub upstream: BTreeMap<String, UpstreamRecord>,
    /// By role.
    pub inputs: BTreeMap<String, InputRecord>,
    /// `--set` arguments of the run that computed the entry.
    pub overrides: Vec<String>,
    pub outputs: Vec<OutputFile>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_s: f64,
    pub tool_version: String,
    pub device: String,
    pub threads: Option<usize>,
    /// From `StageCx::note`.
    pub notes: BTreeMap<String, serde_json::Value>,
    /// For a kind with an extendable budget: the entry's family and budget (`cache::family`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<FamilyRecord>,
    /// The lower-budget entry this result continued instead of starting from zero; the
    /// result (and its key) is the from-scratch one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start_from: Option<WarmStartRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamRecord {
    pub stage: String,
    pub key: StageKey,
    pub subpath: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputRecord {
    pub input: String,
    /// Absolute path at the time of the run: informational, not in the key.
    pub path: String,
    pub mode: String,
    pub digest: String,
    pub files: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative to the entry directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub blake3: String,
    /// The file's mtime when committed (ns since the Unix epoch); a hit compares it. Absent in
    /// entries committed before it was recorded. Never part of a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
}

impl Manifest {
    /// Reads `dir/manifest.json`; `None` unless it is a valid manifest for `expected` (when given).
    pub fn read(dir: &Path, expected: Option<&StageKey>) -> Option<Manifest> {
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
        let manifest: Manifest = serde_json::from_str(&text).ok()?;
        if expected.is_some_and(|k| *k != manifest.key) || manifest.preimage.key() != manifest.key {
            return None;
        }
        Some(manifest)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time since the Unix epoch (Howard Hinnant's civil-from-days).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_709_251_199_250)),
            "2024-02-29T23:59:59.250Z"
        );
    }
}
