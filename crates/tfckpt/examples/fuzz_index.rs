//! The long, bounded run of the deterministic index fuzzer (tests/common/fuzz.rs):
//! `cargo run --release -p vaepipe-tfckpt --example fuzz_index -- [SECONDS] [SEED]`.
//! Seeds are the real fixture indexes (basic, sharded, many) plus multi-block and Snappy
//! re-encodings; panicking inputs are written to `fuzz-panic-N.index` in the current directory.

#[path = "../tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use common::*;

fn main() {
    std::panic::set_hook(Box::new(|_| {})); // panics are caught and counted; keep stderr quiet
    let mut args = std::env::args().skip(1).peekable();
    let write_seeds = args.peek().is_some_and(|a| a == "--write-seeds");
    if write_seeds {
        args.next();
    }
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let read = |n: &str| std::fs::read(index_path(&fixture(n))).expect("fixture index");
    let basic = read("basic");
    let (entries, _) = table_entries(&basic);
    let seeds = vec![
        build_table(&entries, 4, false),
        build_table(&entries, 4, true),
        build_table(&entries, 1, true),
        basic,
        read("sharded"),
        read("many"),
    ];
    if write_seeds {
        // `--write-seeds DIR`: write the seed set for the cargo-fuzz corpus and stop.
        let dir = std::env::args().nth(2).unwrap_or_else(|| "seeds".into());
        std::fs::create_dir_all(&dir).expect("create seed dir");
        for (i, s) in seeds.iter().enumerate().filter(|(_, s)| s.len() < 8192) {
            std::fs::write(format!("{dir}/seed-{i}.index"), s).expect("write seed");
        }
        return;
    }
    let start = Instant::now();
    let report = fuzz::run(&seeds, seed, Duration::from_secs(secs), u64::MAX);
    println!(
        "{} iterations in {:.1} s (seed {seed}): {} accepted, {} rejected, {} panics",
        report.iterations,
        start.elapsed().as_secs_f64(),
        report.accepted,
        report.rejected,
        report.panics.len()
    );
    for (i, p) in report.panics.iter().enumerate() {
        let name = format!("fuzz-panic-{i}.index");
        std::fs::write(&name, p).expect("write panic input");
        println!("wrote {name}");
    }
    if !report.panics.is_empty() {
        std::process::exit(1);
    }
}
