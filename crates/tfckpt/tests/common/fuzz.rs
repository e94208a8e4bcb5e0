//! A small deterministic mutation fuzzer for the index parser, shared by the in-suite smoke test
//! (tests/fuzz_index.rs, a couple of seconds) and the long bounded run
//! (`cargo run --release --example fuzz_index -- SECONDS SEED`). It mutates real fixture index
//! files (bit flips, byte sets, interesting values, truncation, splices, block-aware edits that
//! re-fix CRCs so the mutation reaches the entry and proto decoders) and asserts that
//! `Index::parse` returns instead of panicking.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x12, 0x1a, 0x35, 0x28];

/// Re-fixes the trailer CRC of every block found by walking the footer and index handles, so a
/// mutation inside a block is not stopped by the checksum. Best effort: gives up silently.
fn refix_crcs(file: &mut [u8]) {
    if file.len() < 48 {
        return;
    }
    let footer_at = file.len() - 48;
    let mut handles = Vec::new();
    let mut pos = footer_at;
    for _ in 0..2 {
        match (read_varint(file, &mut pos), read_varint(file, &mut pos)) {
            (Some(o), Some(s)) => handles.push((o, s)),
            _ => return,
        }
    }
    // Data blocks are listed in the index block; fix them before the index block itself.
    if let Some(&(io, is)) = handles.get(1) {
        if let Some(end) = io.checked_add(is).filter(|&e| e <= footer_at as u64) {
            let block = file[io as usize..end as usize].to_vec();
            for h in handles_in_block(&block) {
                fix_one(file, h, footer_at);
            }
        }
    }
    for h in handles {
        fix_one(file, h, footer_at);
    }
}

fn fix_one(file: &mut [u8], (o, s): (u64, u64), limit: usize) {
    let Some(end) = o.checked_add(s).and_then(|e| e.checked_add(5)) else {
        return;
    };
    if end > limit as u64 {
        return;
    }
    let (o, s) = (o as usize, s as usize);
    let kind = file[o + s];
    let c = crc32c::crc32c_append(crc32c::crc32c(&file[o..o + s]), &[kind]);
    let masked = c.rotate_right(15).wrapping_add(0xa282_ead8);
    file[o + s + 1..o + s + 5].copy_from_slice(&masked.to_le_bytes());
}

/// Handles stored as values in an (index) block, best effort.
fn handles_in_block(block: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if block.len() < 4 {
        return out;
    }
    let n = u32::from_le_bytes([
        block[block.len() - 4],
        block[block.len() - 3],
        block[block.len() - 2],
        block[block.len() - 1],
    ]) as usize;
    let Some(end) = n
        .checked_mul(4)
        .and_then(|r| block.len().checked_sub(4 + r))
    else {
        return out;
    };
    let mut pos = 0;
    while pos < end && out.len() < 10_000 {
        let (Some(_), Some(ns), Some(vl)) = (
            read_varint(block, &mut pos),
            read_varint(block, &mut pos),
            read_varint(block, &mut pos),
        ) else {
            break;
        };
        let Some(vpos) = pos.checked_add(ns as usize) else {
            break;
        };
        let Some(next) = vpos.checked_add(vl as usize).filter(|&e| e <= end) else {
            break;
        };
        let mut p = vpos;
        if let (Some(o), Some(s)) = (read_varint(block, &mut p), read_varint(block, &mut p)) {
            out.push((o, s));
        }
        pos = next;
    }
    out
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One mutated copy of `seed_file`.
pub fn mutate(rng: &mut Rng, seed_file: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut f = seed_file.to_vec();
    let n_mut = 1 + rng.below(4);
    for _ in 0..n_mut {
        if f.is_empty() {
            break;
        }
        match rng.below(8) {
            0 => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(f.len());
                f[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let len = rng.below(f.len() + 1);
                f.truncate(len);
            }
            4 => {
                // delete a short range
                let i = rng.below(f.len());
                let n = 1 + rng.below(8.min(f.len() - i));
                f.drain(i..i + n);
            }
            5 => {
                // insert random bytes
                let i = rng.below(f.len() + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    f.insert(i, rng.next() as u8);
                }
            }
            6 => {
                // splice in a range from another seed
                if let Some(o) = others.get(rng.below(others.len())) {
                    if !o.is_empty() {
                        let a = rng.below(o.len());
                        let b = a + rng.below((o.len() - a).min(64)) + 1;
                        let i = rng.below(f.len());
                        let end = (i + (b - a)).min(f.len());
                        f[i..end].copy_from_slice(&o[a..a + (end - i)]);
                    }
                }
            }
            _ => {
                // overwrite 4 bytes with a random little-endian u32 (counts, offsets, crcs)
                if f.len() >= 4 {
                    let i = rng.below(f.len() - 3);
                    let v = match rng.below(3) {
                        0 => rng.next() as u32,
                        1 => u32::MAX - rng.below(4) as u32,
                        _ => rng.below(1 << 16) as u32,
                    };
                    f[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    // Most of the time, make the checksums right again so the mutation reaches deeper code.
    if rng.below(4) != 0 {
        refix_crcs(&mut f);
    }
    f
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub iterations: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub panics: Vec<Vec<u8>>,
}

/// Runs the fuzzer over `seeds` until `budget` elapses or `max_iters` iterations have run.
pub fn run(seeds: &[Vec<u8>], seed: u64, budget: Duration, max_iters: u64) -> Report {
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    let start = Instant::now();
    let name = Path::new("fuzz.index");
    while report.iterations < max_iters && start.elapsed() < budget {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, base, seeds);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            vaepipe_tfckpt::Index::parse(name, &input).is_ok()
        }));
        match outcome {
            Ok(true) => report.accepted += 1,
            Ok(false) => report.rejected += 1,
            Err(_) => {
                if report.panics.len() < 10 {
                    report.panics.push(input);
                }
            }
        }
        report.iterations += 1;
    }
    report
}
