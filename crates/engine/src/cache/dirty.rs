//! `DirtyReason`: why a stage must run, as data, and [`DirtyReason::present`] to say it as a
//! sentence (cargo's `dirty_reason.rs`).
//!
//! The comparison is between the preimage the stage would hash now and the preimage stored in
//! the manifest its `runs/<experiment>/<stage>` link points at: that manifest is kept "only to
//! explain why". Freshness itself is decided by the key alone (an entry exists or not).

use std::collections::BTreeMap;

use serde_json::Value;

use super::fingerprint::ListingDiff;
use super::key::KeyPreimage;
use super::manifest::{Manifest, UpstreamRecord};
use super::store::CacheStore;

#[derive(Debug, Clone, PartialEq)]
pub enum DirtyReason {
    /// No previous run of this stage is linked under `runs/`.
    NeverRun,
    /// `--force`.
    Forced,
    /// The key is the one linked, but its entry is gone (gc, or deleted by hand).
    EntryMissing,
    KeyFormatChanged {
        old: u32,
        new: u32,
    },
    KindChanged {
        old: String,
        new: String,
    },
    KindVersionChanged {
        old: u32,
        new: u32,
    },
    ParamChanged {
        name: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    SeedChanged {
        old: u64,
        new: u64,
    },
    /// The upstream stage behind `role` has a different key.
    UpstreamChanged {
        role: String,
        stage: String,
    },
    /// `from.<role>` now points somewhere else (another stage, input or subpath), or was added or
    /// removed.
    FromChanged {
        role: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The input behind `role` has a different fingerprint; `diff` when both listings are known.
    InputChanged {
        role: String,
        input: String,
        diff: Option<ListingDiff>,
    },
    /// Keys differ, yet no field differs: should not happen; printed so it is noticed.
    Unexplained,
}

fn show(v: &Option<Value>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(unset)".to_owned(),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl DirtyReason {
    /// The reason as a sentence in the user's words.
    pub fn present(&self) -> String {
        match self {
            DirtyReason::NeverRun => "never run".to_owned(),
            DirtyReason::Forced => "forced with `--force`".to_owned(),
            DirtyReason::EntryMissing => {
                "its cache entry is gone (removed by `gc` or by hand)".to_owned()
            }
            DirtyReason::KeyFormatChanged { old, new } => {
                format!("the cache key format changed: {old} → {new}")
            }
            DirtyReason::KindChanged { old, new } => format!("kind changed: `{old}` → `{new}`"),
            DirtyReason::KindVersionChanged { old, new } => {
                format!("kind version changed: {old} → {new}")
            }
            DirtyReason::ParamChanged { name, old, new } => {
                format!("param `{name}` changed: {} → {}", show(old), show(new))
            }
            DirtyReason::SeedChanged { old, new } => format!("seed changed: {old} → {new}"),
            DirtyReason::UpstreamChanged { stage, .. } => format!("upstream `{stage}` changed"),
            DirtyReason::FromChanged { role, old, new } => {
                let s = |v: &Option<String>| {
                    v.as_ref()
                        .map_or("(unset)".to_owned(), |v| format!("`{v}`"))
                };
                format!("`from.{role}` changed: {} → {}", s(old), s(new))
            }
            DirtyReason::InputChanged { input, diff, .. } => match diff {
                Some(d) => {
                    let mut parts = Vec::new();
                    if d.added > 0 {
                        parts.push(format!("{} added", plural(d.added, "file")));
                    }
                    if d.removed > 0 {
                        parts.push(format!("{} removed", plural(d.removed, "file")));
                    }
                    if d.modified > 0 {
                        parts.push(format!("{} modified", plural(d.modified, "file")));
                    }
                    if parts.is_empty() {
                        format!("input `{input}` changed")
                    } else {
                        let eg = if d.examples.is_empty() {
                            String::new()
                        } else {
                            format!(" (e.g. `{}`)", d.examples[0])
                        };
                        format!("input `{input}` changed: {}{eg}", parts.join(", "))
                    }
                }
                None => format!("input `{input}` changed"),
            },
            DirtyReason::Unexplained => {
                "the key changed for a reason the manifest cannot show".to_owned()
            }
        }
    }
}

/// Why `new` differs from the preimage recorded in `old`. `upstream_stage` names the stage behind
/// a role now (for the sentence).
pub fn explain(
    old: &Manifest,
    new: &KeyPreimage,
    upstream_stage: &BTreeMap<String, String>,
    store: &CacheStore,
) -> Vec<DirtyReason> {
    explain_between(
        &old.preimage,
        &old.upstream,
        new,
        upstream_stage,
        Some(store),
    )
}

/// Why preimage `new` differs from `was`, whose upstream stages `was_upstream` names (a
/// manifest's or a plan's records): what `plan` says, and `diff` between any two runs. Without
/// a `store`, a changed input is named but its files are not counted.
pub fn explain_between(
    was: &KeyPreimage,
    was_upstream: &BTreeMap<String, UpstreamRecord>,
    new: &KeyPreimage,
    upstream_stage: &BTreeMap<String, String>,
    store: Option<&CacheStore>,
) -> Vec<DirtyReason> {
    let mut reasons = Vec::new();
    if was.format != new.format {
        reasons.push(DirtyReason::KeyFormatChanged {
            old: was.format,
            new: new.format,
        });
    }
    if was.kind != new.kind {
        reasons.push(DirtyReason::KindChanged {
            old: was.kind.clone(),
            new: new.kind.clone(),
        });
    } else if was.kind_version != new.kind_version {
        reasons.push(DirtyReason::KindVersionChanged {
            old: was.kind_version,
            new: new.kind_version,
        });
    }
    if was.kind == new.kind {
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &was.params, &mut a);
        flatten("", &new.params, &mut b);
        let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for name in names {
            let (o, n) = (a.get(name), b.get(name));
            if o != n {
                reasons.push(DirtyReason::ParamChanged {
                    name: name.clone(),
                    old: o.cloned().cloned(),
                    new: n.cloned().cloned(),
                });
            }
        }
    }
    if was.seed != new.seed {
        reasons.push(DirtyReason::SeedChanged {
            old: was.seed,
            new: new.seed,
        });
    }
    let describe_up = |role: &str, p: &KeyPreimage, stage: Option<&str>| -> Option<String> {
        if let Some(u) = p.upstream.get(role) {
            let s = stage.unwrap_or("upstream");
            return Some(if u.subpath.is_empty() {
                s.to_owned()
            } else {
                format!("{s}/{}", u.subpath)
            });
        }
        p.inputs.get(role).map(|i| {
            if i.subpath.is_empty() {
                i.input.clone()
            } else {
                format!("{}/{}", i.input, i.subpath)
            }
        })
    };
    let roles: std::collections::BTreeSet<&String> = was
        .upstream
        .keys()
        .chain(was.inputs.keys())
        .chain(new.upstream.keys())
        .chain(new.inputs.keys())
        .collect();
    for role in roles {
        let now_stage = upstream_stage.get(role.as_str()).map(String::as_str);
        let then_stage = was_upstream.get(role.as_str()).map(|u| u.stage.as_str());
        let (o, n) = (
            describe_up(role, was, then_stage),
            describe_up(role, new, now_stage),
        );
        match (
            was.upstream.get(role),
            new.upstream.get(role),
            was.inputs.get(role),
            new.inputs.get(role),
        ) {
            (Some(a), Some(b), _, _)
                if a.subpath == b.subpath && then_stage.is_none_or(|t| Some(t) == now_stage) =>
            {
                if a.key != b.key {
                    reasons.push(DirtyReason::UpstreamChanged {
                        role: role.clone(),
                        stage: now_stage.unwrap_or("?").to_owned(),
                    });
                }
            }
            (_, _, Some(a), Some(b)) if a.input == b.input && a.subpath == b.subpath => {
                if a.digest != b.digest || a.mode != b.mode {
                    let diff = store
                        .filter(|_| a.mode == b.mode)
                        .and_then(|s| s.diff_listings(&a.digest, &b.digest));
                    reasons.push(DirtyReason::InputChanged {
                        role: role.clone(),
                        input: b.input.clone(),
                        diff,
                    });
                }
            }
            _ => {
                if o != n {
                    reasons.push(DirtyReason::FromChanged {
                        role: role.clone(),
                        old: o,
                        new: n,
                    });
                }
            }
        }
    }
    if reasons.is_empty() {
        reasons.push(DirtyReason::Unexplained);
    }
    reasons
}

/// Dotted paths to leaf values (arrays are leaves: a list param changes as a whole).
pub(crate) fn flatten<'a>(prefix: &str, v: &'a Value, out: &mut BTreeMap<String, &'a Value>) {
    match v {
        Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sentences() {
        let cases = [
            (
                DirtyReason::ParamChanged {
                    name: "loss_features".into(),
                    old: Some(json!("Conv2d_1a_3x3")),
                    new: Some(json!("Conv2d_1a_3x3,Conv2d_2a_3x3")),
                },
                "param `loss_features` changed: \"Conv2d_1a_3x3\" → \"Conv2d_1a_3x3,Conv2d_2a_3x3\"",
            ),
            (DirtyReason::UpstreamChanged { role: "model".into(), stage: "train".into() }, "upstream `train` changed"),
            (
                DirtyReason::InputChanged {
                    role: "dataset".into(),
                    input: "celeba".into(),
                    diff: Some(ListingDiff { added: 0, removed: 0, modified: 3, examples: vec!["a.jpg".into()] }),
                },
                "input `celeba` changed: 3 files modified (e.g. `a.jpg`)",
            ),
            (DirtyReason::KindVersionChanged { old: 1, new: 2 }, "kind version changed: 1 → 2"),
        ];
        for (reason, sentence) in cases {
            assert_eq!(reason.present(), sentence);
        }
    }

    #[test]
    fn flatten_names_nested_params() {
        let v = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        let mut out = BTreeMap::new();
        flatten("", &v, &mut out);
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a.b", "a.c", "d"]);
    }
}
