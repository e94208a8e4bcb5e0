//! The cache keys of `experiments/demo.toml`, computed by the real binary through the real
//! registry: every stage's params are serialised by its kind's own type with every default
//! filled in, so adding a defaulted param, renaming one, changing a default or a kind's
//! `VERSION` moves these keys — and every user's cache would silently miss. If this fails on
//! purpose, say so in CHANGELOG.md and update the constants.

use std::collections::BTreeMap;

use crate::support::Project;

/// `plan -v`'s keys by stage name.
fn keys(p: &Project, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["plan", "demo.toml", "-v"];
    args.extend_from_slice(extra);
    let plan = p.ok(&args);
    let mut out = BTreeMap::new();
    let mut stage = None;
    for line in plan.stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["key", key] => {
                let name: String = stage.take().expect("a stage line before its key");
                out.insert(name, (*key).to_owned());
            }
            [name, "fresh" | "dirty", ..] => stage = Some((*name).to_owned()),
            _ => {}
        }
    }
    out
}

fn demo() -> Project {
    let p = Project::new();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/demo.toml");
    p.file("demo.toml", &std::fs::read_to_string(demo).unwrap());
    p
}

/// The module moves of issue 12 kept main's keys; they moved on purpose with the VERSION bumps of
/// `align-check` (2: decode limits), `train-vae` (2: full grids, event files) and
/// `render-attribute` (2: event file), which reach every stage downstream of them.
const GOLDEN: [(&str, &str); 6] = [
    (
        "check",
        "5e9b0eb809c2fa0ca53a680b4c0c440af902f487cc14b187a6b8317d5e89478d",
    ),
    (
        "encode",
        "981a773d34191f47999e19ff405352fe517676670305e857fcbaa998a4ace3ec",
    ),
    (
        "faces",
        "0593624c9a35a3fa2c30964fdbf57805b29c2d5a7596e7a2fce1830d34e5f503",
    ),
    (
        "render",
        "466b8dce27e4633596102aac96be8ad0c51fdf9ca5f0d8f270b5f32e52900767",
    ),
    (
        "train",
        "9023a6cec4fd9451c630367ae60c76ad4400ab7675b2dfcf9980a0a0c571f7c9",
    ),
    (
        "vectors",
        "095f510a4865d124fcf3b666c1cd9c20fac7a42793650bb4788b7bb186e5ba29",
    ),
];

#[test]
fn demo_keys_are_golden() {
    let p = demo();
    let keys = keys(&p, &[]);
    let golden: BTreeMap<String, String> = GOLDEN
        .iter()
        .map(|(s, k)| ((*s).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(keys, golden, "the demo's cache keys moved");
}

#[test]
fn an_explicit_default_keeps_the_keys_and_a_changed_value_moves_its_subtree() {
    let p = demo();
    let base = keys(&p, &[]);
    // `train-vae`'s default `resize` written out: the same params, the same keys.
    assert_eq!(
        keys(&p, &["--set", r#"stage.train.resize="tf-legacy""#]),
        base
    );
    // A different encode batch size: encode and what reads it move, nothing upstream.
    let moved = keys(&p, &["--set", "stage.encode.batch_size=64"]);
    for stage in ["faces", "check", "train"] {
        assert_eq!(moved[stage], base[stage], "{stage}");
    }
    for stage in ["encode", "vectors"] {
        assert_ne!(moved[stage], base[stage], "{stage}");
    }
}
