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

/// Computed by `main`'s binary before the stage modules moved (issue 12): the keys did not move.
const GOLDEN: [(&str, &str); 6] = [
    (
        "check",
        "18e6b25bde06ee1cebaf986f0cc9824057ece399727ce47adefdc626641b7d53",
    ),
    (
        "encode",
        "239bce3746e9620078735feaceb34882ae98739a7b83fa60d939f77757866df3",
    ),
    (
        "faces",
        "0593624c9a35a3fa2c30964fdbf57805b29c2d5a7596e7a2fce1830d34e5f503",
    ),
    (
        "render",
        "cff0c487306498cd96c1974763aa5471d9ea8c62135d1321d3efa8ac7e6a2bd0",
    ),
    (
        "train",
        "663204a63b78b97350c76b4784db2a1ef16e0dca6a50689938e4ae71e6deb4fe",
    ),
    (
        "vectors",
        "f57946c5d0b78c78d74c6a1977d10262d9966b248ebd8cbb7d43089130bff31b",
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
