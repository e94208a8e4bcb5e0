//! The engine's layer order, enforced (ARCHITECTURE.md's "Layers" invariant): a module may
//! import only from its own layer or the layers below it, so the import graph has no cycle.
//! Beside the root crate's tidy check that the engine knows nothing about torch.
//!
//! The test reads every file under `crates/engine/src`, takes its top-level module as its
//! layer, and finds each `crate::<module>` it names outside comments (in `use` lines, grouped
//! `use crate::{a, b}` lists and inline paths alike). `planted_back_edge_is_caught` shows the
//! check failing on a planted import from a low layer to a high one.

#![allow(clippy::unwrap_used)] // a panic in a test is a test failure

use std::path::{Path, PathBuf};

/// Lowest first. Modules on one line share a layer and may import each other. `signal` (the
/// process-wide cancellation flag) is a leaf every layer may use.
const LAYERS: &[&[&str]] = &[
    &["atomic_file", "signal", "progress", "panic_hook"],
    &["stage"],
    &["registry"],
    &["cache"],
    &["config"],
    &["graph"],
    &["scheduler"],
    &["executor"],
    &["lock", "report"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (`//` to the end of the line; no block comments
/// are used in the engine).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a piece of code names through `crate::`.
fn imported_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b::{Y, Z}}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        found.push(ident(&group[i..]).to_owned());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest).to_owned());
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

/// Every import that goes up the layer order, as `file: module (layer) → module (layer)`.
fn back_edges(files: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (module, text) in files {
        let Some(own) = layer_of(module) else {
            continue;
        };
        for imported in imported_modules(&code(text)) {
            match layer_of(&imported) {
                Some(layer) if layer > own => bad.push(format!(
                    "{module} (layer {own}) imports {imported} (layer {layer})"
                )),
                _ => {}
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

fn engine_sources() -> Vec<(String, String)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).unwrap();
            let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
            let module = first.trim_end_matches(".rs").to_owned();
            (module != "lib" && module != "bin")
                .then(|| (module, std::fs::read_to_string(&f).unwrap()))
        })
        .collect()
}

#[test]
fn every_engine_module_has_a_layer() {
    let sources = engine_sources();
    assert!(sources.len() > 30, "found only {} files", sources.len());
    let mut unplaced: Vec<&str> = sources
        .iter()
        .map(|(m, _)| m.as_str())
        .filter(|m| layer_of(m).is_none())
        .collect();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS (and ARCHITECTURE.md): {unplaced:?}"
    );
}

#[test]
fn a_module_imports_only_from_layers_below_it() {
    let bad = back_edges(&engine_sources());
    assert!(
        bad.is_empty(),
        "imports against the layer order (ARCHITECTURE.md, \"Layers\"):\n{}",
        bad.join("\n")
    );
}

#[test]
fn planted_back_edge_is_caught() {
    // The knots issue 12 untied, planted again: the registry reaching up to `lock`, and config
    // calling into the graph.
    let mut sources = engine_sources();
    sources.push((
        "registry".into(),
        "use crate::lock::OutputComparator; // a comment naming crate::cli is ignored\n".into(),
    ));
    sources.push((
        "config".into(),
        "use crate::{cache::key::write_canonical, graph::{self, StageGraph}};\n".into(),
    ));
    let bad = back_edges(&sources);
    assert_eq!(
        bad,
        [
            "config (layer 4) imports graph (layer 5)",
            "registry (layer 2) imports lock (layer 8)",
        ]
    );
}

#[test]
fn imports_are_found_in_every_spelling() {
    let found = imported_modules(
        "use crate::cache::CacheStore;\nuse crate::{config::{A, B}, graph};\nlet x = crate::report::f();",
    );
    assert_eq!(found, ["cache", "config", "graph", "report"]);
}
