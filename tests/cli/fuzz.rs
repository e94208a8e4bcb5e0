//! Seeded mutation loops over the text parsers a user's files reach: the experiment config
//! (TOML → raw → resolved, with the real stage kinds, errors rendered with their carets) and the
//! CelebA attribute, partition and identity lists. Deterministic (xorshift, fixed seeds and
//! iteration counts) and a few seconds long; a panic is a failure that prints the input.
//! Longer runs: `cargo fuzz` targets in `crates/engine/fuzz` and `crates/facedata/fuzz`.
//! See: issue 15.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use vaepipe_engine::config::{load_sweep_str, SourceFile};
use vaepipe_facedata::celeba;

/// xorshift64*: deterministic and dependency-free (also `fuzz_bytes.rs`'s).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that parsers treat specially: structure, numbers at their limits, odd Unicode.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    ",",
    ".",
    "\n",
    "\r\n",
    "\t",
    " ",
    "#",
    "[[",
    "]]",
    "\u{feff}",
    "é",
    "\u{0}",
    "-1",
    "+1",
    "1",
    "0",
    "2",
    "-",
    "nan",
    "inf",
    "1e309",
    "18446744073709551616",
    "-9223372036854775809",
    "true",
    "[stage.x]",
    "kind = \"encode\"",
    "from = { data = \"faces\" }",
    "[sweep]",
    "[experiment]",
    "seed = ",
    "\"\"\"",
    "Smiling",
    "000001.jpg",
    "img_align_celeba",
];

/// One mutated copy of `base`: 1–4 byte, token and line edits; then lossy UTF-8.
fn mutate(rng: &mut Rng, base: &str, others: &[String]) -> String {
    let mut f = base.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = f.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                f[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                f[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let t = rng.pick(TOKENS).as_bytes().to_vec();
                f.splice(i..i, t);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(16.min(len - i));
                f.drain(i..i + n);
            }
            4 => f.truncate(rng.below(len + 1)),
            5 => {
                // Duplicate, drop or swap whole lines.
                let text = String::from_utf8_lossy(&f).into_owned();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                match rng.below(3) {
                    0 => lines.insert(a, lines[b]),
                    1 => {
                        lines.remove(a);
                    }
                    _ => lines.swap(a, b),
                }
                f = lines.join("\n").into_bytes();
            }
            6 => {
                // Splice a range of another seed.
                let o = rng.pick(others).as_bytes();
                if !o.is_empty() {
                    let a = rng.below(o.len());
                    let b = (a + 1 + rng.below(80)).min(o.len());
                    let i = rng.below(len + 1);
                    f.splice(i..i, o[a..b].iter().copied());
                }
            }
            7 if len > 0 => {
                // Replace a whitespace-separated token.
                let text = String::from_utf8_lossy(&f).into_owned();
                let words: Vec<&str> = text.split(' ').collect();
                let i = rng.below(words.len());
                let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
                words[i] = rng.pick(TOKENS).to_string();
                f = words.join(" ").into_bytes();
            }
            _ => {
                // Repeat a range (long lines, many rows).
                if len > 0 {
                    let a = rng.below(len);
                    let b = (a + 1 + rng.below(40)).min(len);
                    let chunk = f[a..b].to_vec();
                    for _ in 0..1 + rng.below(20) {
                        f.splice(a..a, chunk.iter().copied());
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&f).into_owned()
}

struct Tally {
    iterations: u64,
    accepted: u64,
    rejected: u64,
}

/// Runs `parse` over `iterations` mutations of `seeds`; panics (with the input) on a panic.
fn fuzz(
    name: &str,
    seeds: &[String],
    seed: u64,
    iterations: u64,
    parse: impl Fn(&str) -> Result<(), String>,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally {
        iterations: 0,
        accepted: 0,
        rejected: 0,
    };
    let started = Instant::now();
    let mut found = None;
    for _ in 0..iterations {
        let base: &str = rng.pick(seeds).as_str();
        let input = mutate(&mut rng, base, seeds);
        match catch_unwind(AssertUnwindSafe(|| parse(&input))) {
            Ok(Ok(())) => tally.accepted += 1,
            Ok(Err(message)) => {
                assert!(!message.is_empty(), "an empty error for {input:?}");
                tally.rejected += 1;
            }
            Err(_) => {
                found = Some(input);
                break;
            }
        }
        tally.iterations += 1;
    }
    if let Some(input) = found {
        panic!("{name}: the parser panicked on {input:?}");
    }
    // For the record (issue 15's closing note): iterations, outcomes and time.
    eprintln!(
        "fuzz {name}: {} iterations ({} accepted, {} rejected) in {:.2}s, 0 panics",
        tally.iterations,
        tally.accepted,
        tally.rejected,
        started.elapsed().as_secs_f64()
    );
    tally
}

#[test]
fn the_config_parser_survives_seeded_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<String> = ["experiments/demo.toml", "experiments/smile.toml"]
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
        .collect();
    seeds.push(crate::pipeline::TINY.to_owned());
    seeds.push(format!(
        "{}\n[sweep]\nmode = \"zip\"\n\"stage.train.alfa\" = [0.5, 1, 2]\n\"stage.train.beta\" = [1, 2, 3]\n",
        crate::pipeline::TINY
    ));
    let registry = vaepipe::stages::registry();
    let file = root.join("fuzz.toml");
    let t = fuzz("config", &seeds, 15, 1500, |text| {
        let source = Arc::new(SourceFile {
            display_path: "fuzz.toml".into(),
            text: text.to_owned(),
        });
        match load_sweep_str(source, &file, &registry, &[], &[], None) {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(
        t.accepted > 0 && t.rejected > 0,
        "mutations should reach both outcomes"
    );
}

#[test]
fn the_celeba_parsers_survive_seeded_mutations() {
    let rows: Vec<(String, [i8; 40])> = (0..6)
        .map(|i| {
            let mut v = [-1i8; 40];
            v[i * 7 % 40] = 1;
            (format!("{:06}.jpg", i + 1), v)
        })
        .collect();
    let attributes = celeba::format_attributes(rows.iter().map(|(n, v)| (n.as_str(), v)));
    let partitions = celeba::format_pairs(
        rows.iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i % 3)),
    );
    let identities = celeba::format_pairs(
        rows.iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), 100 + i)),
    );
    let path = Path::new("list_attr_celeba.txt");
    let named = |r: Result<(), vaepipe_facedata::Error>| match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with(&path.display().to_string()),
                "an error that does not name the file: {message}"
            );
            Err(message)
        }
    };
    let seeds = vec![attributes, partitions.clone(), identities.clone()];
    let t = fuzz("celeba attributes", &seeds, 15, 3000, |text| {
        named(celeba::parse_attributes(path, text).map(|_| ()))
    });
    assert!(t.accepted > 0 && t.rejected > 0);
    let t = fuzz("celeba partitions", &seeds, 16, 3000, |text| {
        named(celeba::parse_partitions(path, text).map(|_| ()))
    });
    assert!(t.accepted > 0 && t.rejected > 0);
    let t = fuzz(
        "celeba identities",
        &[identities, partitions],
        17,
        3000,
        |text| named(celeba::parse_identities(path, text).map(|_| ())),
    );
    assert!(t.accepted > 0 && t.rejected > 0);
}
