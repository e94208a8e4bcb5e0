//! The root crate's layering, checked on the source: a module may name (`crate::x`) only
//! modules of lower layers or its own. Training machinery never reaches into stage files, models
//! never into training, and so on — ARCHITECTURE.md's code map, as a test.

use std::path::{Path, PathBuf};

/// Bottom to top; a module may use any module of a lower layer.
const LAYERS: &[&[&str]] = &[
    &["limits", "device", "torch_runtime", "omp_wait"],
    &["models", "analysis"],
    &["formats", "data"],
    &["train"],
    &["stages"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            files(&entry.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The `crate::<module>` names in `text`, comments left out.
fn crate_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// Each `(file, module it names)` pair that goes up the layers.
fn back_edges(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for layer in LAYERS.iter().flat_map(|l| l.iter()) {
        let mut paths = Vec::new();
        files(&src.join(layer), &mut paths);
        files(&src.join(format!("{layer}.rs")), &mut paths);
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for used in crate_modules(&text) {
                if let (Some(from), Some(to)) = (layer_of(layer), layer_of(&used)) {
                    if to > from {
                        found.push(format!("{} uses crate::{used}", path.display()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn root_modules_import_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = back_edges(&src);
    assert!(edges.is_empty(), "imports up the layers: {edges:#?}");
}

#[test]
fn a_planted_back_edge_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    std::fs::create_dir_all(&train).unwrap();
    std::fs::write(
        train.join("driver.rs"),
        "//! a driver\n// crate::stages in a comment is fine\nuse crate::stages::common;\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("data.rs"), "use crate::models::x;\n").unwrap();
    let edges = back_edges(dir.path());
    assert_eq!(edges.len(), 1, "{edges:?}");
    assert!(
        edges[0].contains("driver.rs uses crate::stages"),
        "{edges:?}"
    );
}
