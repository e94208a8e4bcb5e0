//! A short, deterministic fuzz smoke test of the index parser (about a second): mutated copies of
//! the real fixture indexes and of re-encoded multi-block / Snappy variants must be rejected or
//! accepted, never panic. The long run is `cargo run --release --example fuzz_index`; the
//! coverage-guided one is the cargo-fuzz target in `fuzz/`.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure

mod common;

use std::time::Duration;

use common::*;

pub fn seeds() -> Vec<Vec<u8>> {
    let basic = std::fs::read(index_path(&fixture("basic"))).unwrap();
    let sharded = std::fs::read(index_path(&fixture("sharded"))).unwrap();
    let (entries, _) = table_entries(&basic);
    vec![
        build_table(&entries, 4, false),
        build_table(&entries, 4, true),
        basic,
        sharded,
    ]
}

#[test]
fn mutated_indexes_never_panic() {
    let report = fuzz::run(&seeds(), 0x5eed, Duration::from_millis(1500), 200_000);
    println!(
        "{} iterations: {} accepted, {} rejected",
        report.iterations, report.accepted, report.rejected
    );
    assert!(report.iterations > 100, "{report:?}");
    assert!(report.rejected > 0 && report.accepted > 0, "{report:?}");
    assert!(
        report.panics.is_empty(),
        "panicking inputs: {:02x?}",
        report.panics
    );
}
