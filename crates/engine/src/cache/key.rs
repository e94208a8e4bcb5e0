//! Cache keys: what a stage's result depends on, hashed.
//!
//! # What a key is
//!
//! A [`StageKey`] is the blake3 hash (hex) of a [`KeyPreimage`] written as canonical JSON:
//! object keys sorted at every level, no whitespace, numbers as serde_json prints them. The
//! preimage is built from the *resolved* config, never from the TOML text, so two files that
//! mean the same thing get the same key. `vaepipe plan -v` prints the exact preimage, and every
//! manifest stores it, so the explanation of a key can never drift from the key itself (loading
//! a manifest re-hashes the stored preimage and rejects the entry on mismatch).
//!
//! # What is in the key, and why
//!
//! | value | in `StageKey` | why |
//! |---|---|---|
//! | key format version ([`KEY_FORMAT`]) | ✓ | an encoding change must miss every old entry, never alias one |
//! | stage kind (`kind`) | ✓ | different kinds never share an entry |
//! | kind `VERSION` | ✓ | bumped (with a CHANGELOG line) when a kind's output changes meaning |
//! | resolved params, canonical JSON of the typed `Params` | ✓ | defaults are filled in and values typed, so writing a default explicitly, or `1` for a float `1.0`, does not change the key |
//! | `--set` overrides | ✓ (through the params they change) | an override is just a param value; the argument text itself is recorded in the manifest only |
//! | experiment `seed` | ✓ | results depend on it |
//! | upstream stage keys, by role, with the `from` subpath | ✓ | a change upstream reruns everything downstream and nothing upstream |
//! | external inputs, by role: input name, subpath, fingerprint mode and digest | ✓ | data changes rerun the consumer; the name is there so renaming an input is visible in `plan` |
//! | stage name, experiment name | ✗ | two stages computing the same thing share one entry; renaming a stage is free |
//! | sweep variant (its name, the `[sweep]` table, `--sweep`) | ✗ (only through the params a swept value sets) | a variant's stage key is the key of the resolved stage, so variants that agree on a stage's inputs share its entry and it runs once; adding a value to a sweep list reruns only the new variants |
//! | cache dir, `runs/` dir, experiment file path, absolute input paths | ✗ | moving a project keeps its cache (cargo's rule) |
//! | device, threads, log level, progress, `--jobs` | ✗ | must not change the result; they live in `RunOptions`, which is never serialised into a key |
//! | a kind's extendable budget param (`Stage::extendable_budget`, `max_steps`) | ✓ in `StageKey`; ✗ in the *family* ([`super::family`]) | a longer run is another result, so another key; the family (this preimage minus that one param) is what finds the shorter entry a warm start continues |
//! | `warm_start_from`, `[experiment] warm_start` | ✗, recorded in the manifest | a warm-started result is the from-scratch result, so it has the from-scratch key |
//! | vaepipe and torch versions | ✗, recorded in the manifest | a decision, not an oversight: cargo keys on the rustc version, vaepipe relies on kind `VERSION` bumps and `verify` instead, so upgrading the tool does not throw away days of training |
//!
//! # Considerations for inclusion
//!
//! Anything that can change the bytes a stage writes belongs in the key; anything that cannot
//! must stay out, or users lose cache hits for no reason and stop trusting the cache. A new
//! param on a kind enters the key automatically (it is part of `Params`); adding one with a
//! default changes every key of that kind, which is why a kind's `VERSION` and the golden-key
//! test exist. Stat-mode input fingerprints (sorted relative path, size, mtime) can give false
//! *misses* (a `cp` or Docker layer rewrites mtimes) but should not give false hits; the case
//! where they can (same size and mtime, different bytes) is what `fingerprint = "content"` is for.
//!
//! # Files on disk
//!
//! - `<cache>/entries/<key>/`: a committed entry: the stage's output files plus `manifest.json`
//!   (key, stage, kind, kind version, the preimage with resolved params, upstream keys, input
//!   fingerprints, each output file's blake3 and size, start/end time, tool version, device,
//!   notes). It appears by one `rename(2)` of a finished temp dir whose manifest was written and
//!   fsynced last, so an entry without a valid manifest is never a hit.
//! - `<cache>/tmp/<key>.<pid>.<n>/`: a run in progress; never read; removed by `gc`.
//! - `<cache>/partial/<key>/`: resumable checkpoints of an unfinished run; survives crashes;
//!   removed once the entry is committed.
//! - `<cache>/locks/<key>.lock`: the per-key `flock`; released by the kernel when a process dies.
//! - `<cache>/fingerprints/<digest>.tsv`: the per-file listing behind an input digest, so `plan`
//!   can say "3 files modified".
//! - `<cache>/stat-cache/<hash of the input root>.tsv`: a content-fingerprinted input's files with
//!   their stat and blake3, so unchanged files are not read again ([`super::stat_cache`]).
//! - `<cache>/families/<family>.tsv`: `<budget>\t<key>` per committed entry of an extendable
//!   kind's family; `<cache>/partial/<key>.warm.json`: what a seeded partial dir continues
//!   (both in [`super::family`]).
//! - `<cache>/roots/<hash>`: the absolute path of a `runs/<experiment>/<stage>` (or, in a sweep,
//!   `runs/<experiment>/<variant>/<stage>`) link, so `gc` knows which entries are linked.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Bumped whenever the preimage's encoding changes (and the golden-key test with it).
pub const KEY_FORMAT: u32 = 1;

/// A stage's cache key: 64 hex digits of blake3.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageKey(String);

impl StageKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }

    /// Parses a directory name back into a key; `None` unless it is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<StageKey> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| StageKey(s.to_owned()))
    }
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a key is computed from (see the table in the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPreimage {
    pub format: u32,
    pub kind: String,
    pub kind_version: u32,
    pub params: serde_json::Value,
    pub seed: u64,
    /// By role.
    pub upstream: BTreeMap<String, UpstreamRef>,
    /// By role.
    pub inputs: BTreeMap<String, InputRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRef {
    pub key: StageKey,
    pub subpath: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    pub input: String,
    pub subpath: String,
    pub mode: String,
    pub digest: String,
}

impl KeyPreimage {
    /// The exact bytes that are hashed.
    pub fn canonical_json(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut out = String::new();
        write_canonical(&value, &mut out);
        out
    }

    pub fn key(&self) -> StageKey {
        StageKey(
            blake3::hash(self.canonical_json().as_bytes())
                .to_hex()
                .to_string(),
        )
    }
}

/// JSON with object keys sorted at every level, whatever serde_json's map type is (a crate in
/// the build enabling `preserve_order` must not change keys).
pub fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use serde_json::json;

    fn preimage(params: serde_json::Value) -> KeyPreimage {
        KeyPreimage {
            format: KEY_FORMAT,
            kind: "train-vae".into(),
            kind_version: 1,
            params,
            seed: 666,
            upstream: BTreeMap::from([(
                "dataset".to_owned(),
                UpstreamRef {
                    key: StageKey("ab".repeat(32)),
                    subpath: "casia".into(),
                },
            )]),
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let p = preimage(json!({"b": 1, "a": {"d": 2.0, "c": [3, {"z": 0, "y": 1}]}}));
        assert_eq!(
            p.canonical_json(),
            format!(
                "{{\"format\":1,\"inputs\":{{}},\"kind\":\"train-vae\",\"kind_version\":1,\"params\":{{\"a\":{{\"c\":[3,{{\"y\":1,\"z\":0}}],\"d\":2.0}},\"b\":1}},\"seed\":666,\"upstream\":{{\"dataset\":{{\"key\":\"{}\",\"subpath\":\"casia\"}}}}}}",
                "ab".repeat(32)
            )
        );
    }

    /// The golden key: if this fails, the key encoding changed. Every existing cache entry would
    /// silently miss; bump `KEY_FORMAT`, add a CHANGELOG line, then update the constant.
    #[test]
    fn golden_key_of_a_train_stage() {
        let p = preimage(json!({
            "model": "dfc_vae", "loss": "PERCEPTUAL", "loss_features": "Conv2d_1a_3x3",
            "alfa": 1.0, "beta": 0.5, "latent_var_size": 100, "max_nrof_steps": 50000,
        }));
        assert_eq!(p.key().as_str(), GOLDEN);
    }

    const GOLDEN: &str = "465d784358356d5eaeed4500cba797065611affddd537d97a9961bd1eb7488dd";

    #[test]
    fn key_parse_round_trips_and_rejects_junk() {
        let k = preimage(json!({})).key();
        assert_eq!(StageKey::parse(k.as_str()), Some(k.clone()));
        assert_eq!(k.short().len(), 12);
        assert_eq!(StageKey::parse("tmp"), None);
        assert_eq!(StageKey::parse(&"G".repeat(64)), None);
    }
}
