//! Tidy checks on the source tree (rust-analyzer's tidy, scaled down): every source file opens
//! with a `//!` paragraph saying what it is for, and the engine names no torch, image or HDF5
//! API — the invariant ARCHITECTURE.md promises.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "fixtures" || n == "fuzz")
            {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests", "benches"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(
        files.len() > 20,
        "found only {} files: is the walk broken?",
        files.len()
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` doc: {missing:#?}"
    );
}

#[test]
fn the_engine_knows_nothing_about_torch_images_or_hdf5() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/engine"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for forbidden in ["tch::", "image::", "hdf5", "torch_sys"] {
            assert!(
                !text.contains(forbidden),
                "{} mentions `{forbidden}`",
                file.display()
            );
        }
    }
    let manifest = std::fs::read_to_string(root().join("crates/engine/Cargo.toml")).unwrap();
    for dep in ["tch", "image", "hdf5"] {
        assert!(
            !manifest
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{dep} "))),
            "engine depends on {dep}"
        );
    }
}
