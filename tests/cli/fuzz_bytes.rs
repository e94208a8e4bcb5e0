//! Seeded mutation loops over the binary readers a user's (or a download's) bytes reach: image
//! headers and pixels through `facedata::decode` with its limits, the `.pt` state-dict reader,
//! MTCNN weight import (the three `.pt` files, then the nets' shape checks), and the JSON
//! manifests and TOML lock files vaepipe reads back. Mutations of valid seeds: bit flips,
//! byte overwrites, truncation, cut and repeated ranges, and length fields inflated (a 2-, 4- or
//! 8-byte big- or little-endian integer set near its maximum). Each input must be accepted or
//! give an error that names the file, never panic, and no single allocation may exceed the
//! reader's own limit (measured on this thread by [`LargestAllocation`]). Deterministic and a
//! few seconds each; see issue 15. (`crates/tfckpt/tests/fuzz_index.rs` covers the TF
//! checkpoint index the same way; HDF5 inputs go through the HDF5 C library, whose reaction to
//! corrupt files is not ours to bound, so only their declared sizes are checked, in
//! `formats/h5_input.rs`.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use vaepipe_facedata::decode::{open_image, DecodeLimits};

use crate::fuzz::Rng;

/// The system allocator, recording the largest single request made by a thread while that
/// thread is measuring (other tests in this binary run on other threads and are not counted).
struct LargestAllocation;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// The one `unsafe` in the tests: a `GlobalAlloc` must be an unsafe impl. It only forwards to
// `System` after noting the size in a const-initialised thread-local (which never allocates).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `f`, returning its result and the largest single allocation it made on this thread.
fn largest_allocation_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    MEASURING.with(|m| m.set(true));
    let out = f();
    MEASURING.with(|m| m.set(false));
    (out, LARGEST.with(Cell::get))
}

/// One mutated copy of `base`: 1–3 edits. Edits land anywhere, but half of them in the first
/// `header` bytes, where formats keep their sizes and offsets.
fn mutate(rng: &mut Rng, base: &[u8], header: usize) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = f.len();
        if len == 0 {
            break;
        }
        let i = if rng.below(2) == 0 {
            rng.below(len.min(header))
        } else {
            rng.below(len)
        };
        match rng.below(6) {
            0 => f[i] ^= 1 << rng.below(8),
            1 => f[i] = rng.next() as u8,
            2 => f.truncate(rng.below(len)),
            3 => {
                // Length-field inflation: a 2/4/8-byte integer near its maximum, either order.
                let width = [2, 4, 8][rng.below(3)];
                let value = u64::MAX - rng.below(256) as u64;
                let bytes = if rng.below(2) == 0 {
                    value.to_be_bytes()[8 - width..].to_vec()
                } else {
                    value.to_le_bytes()[..width].to_vec()
                };
                for (k, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = f.get_mut(i + k) {
                        *slot = b;
                    }
                }
            }
            4 => {
                let n = 1 + rng.below(64.min(len - i));
                f.drain(i..i + n);
            }
            _ => {
                let n = (1 + rng.below(64)).min(len - i);
                let chunk = f[i..i + n].to_vec();
                for _ in 0..1 + rng.below(8) {
                    f.splice(i..i, chunk.iter().copied());
                }
            }
        }
    }
    f
}

/// Iterations, and how many inputs were accepted and refused.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
}

/// Writes `iterations` mutations of `seeds` to `file` and calls `read(file)` on each: a panic
/// fails with the seed and iteration, an error must name `file`, and no single allocation may
/// exceed `cap` bytes.
fn fuzz_file(
    name: &str,
    seeds: &[Vec<u8>],
    header: usize,
    file: &Path,
    (seed, iterations, cap): (u64, u64, usize),
    read: impl Fn(&Path) -> Result<(), String>,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    let shown = file.display().to_string();
    let mut largest = 0;
    for i in 0..iterations {
        let which = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[which], header);
        std::fs::write(file, &input).unwrap();
        let (outcome, size) =
            largest_allocation_of(|| catch_unwind(AssertUnwindSafe(|| read(file))));
        largest = largest.max(size);
        match outcome {
            Ok(Ok(())) => tally.accepted += 1,
            Ok(Err(message)) => {
                assert!(
                    message.contains(&shown),
                    "{name}: an error that does not name the file: {message}"
                );
                tally.rejected += 1;
            }
            Err(_) => {
                let kept = file.with_extension("panicked");
                std::fs::write(&kept, &input).unwrap();
                panic!(
                    "{name}: the reader panicked on iteration {i} (seed {which}); input kept at {}",
                    kept.display()
                );
            }
        }
        assert!(
            size <= cap,
            "{name}: iteration {i} (seed {which}) allocated {size} bytes at once, above the cap of {cap}"
        );
    }
    // For the record (issue 15's closing note): iterations, outcomes, time, memory.
    eprintln!(
        "fuzz {name}: {iterations} iterations ({} accepted, {} rejected) in {:.2}s, 0 panics, largest allocation {largest} bytes",
        tally.accepted,
        tally.rejected,
        started.elapsed().as_secs_f64()
    );
    tally
}

/// Small PNGs and JPEGs in the layouts the decoder converts (RGB, 16-bit, grey, grey+alpha).
fn image_seeds() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageFormat, ImageReader};
    let rgb = image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 77]));
    let base = DynamicImage::ImageRgb8(rgb);
    let mut out = Vec::new();
    for (img, format) in [
        (base.clone(), ImageFormat::Png),
        (DynamicImage::ImageRgb16(base.to_rgb16()), ImageFormat::Png),
        (
            DynamicImage::ImageLumaA8(base.to_luma_alpha8()),
            ImageFormat::Png,
        ),
        (base.clone(), ImageFormat::Jpeg),
        (DynamicImage::ImageLuma8(base.to_luma8()), ImageFormat::Jpeg),
    ] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, format).unwrap();
        let bytes = bytes.into_inner();
        // Each seed decodes as itself before it is mutated.
        let back = ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .unwrap()
            .decode()
            .unwrap();
        assert_eq!((back.width(), back.height()), (24, 16));
        out.push(bytes);
    }
    out
}

#[test]
fn image_headers_and_pixels_survive_seeded_mutations_within_the_decode_limits() {
    let tmp = tempfile::tempdir().unwrap();
    // Small limits, so an inflated size field meets them; the image crate's own allocation
    // cap is then 1 MiB (decode.rs), and the decoded RGB buffer is far below it.
    let limits = DecodeLimits {
        max_side: 512,
        max_pixels: 65_536,
    };
    let t = fuzz_file(
        "image decode",
        &image_seeds(),
        64,
        &tmp.path().join("face.png"),
        (15, 3000, 2 << 20),
        |path| {
            open_image(path, &limits)
                .map(|d| assert!(limits.allows(d.rgb.width(), d.rgb.height())))
                .map_err(|e| e.to_string())
        },
    );
    assert!(t.accepted > 0 && t.rejected > 0, "{t:?}");
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_pt_reader_survives_seeded_mutations_of_a_state_dict() {
    let seed = std::fs::read(root().join("tests/fixtures/mini_facenet_pytorch.pt")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // pt_file.rs: tensors may share storages but hold at most 4× the file's bytes in total,
    // and the file itself is read whole; 8× is room for both.
    let cap = 8 * seed.len();
    let t = fuzz_file(
        "pt state dict",
        &[seed],
        4096,
        &tmp.path().join("weights.pt"),
        (16, 400, cap),
        |path| {
            vaepipe::models::weights::read_pt(path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    assert!(t.rejected > 0, "{t:?}");
}

#[test]
fn mtcnn_weight_import_survives_seeded_mutations_of_its_pt_files() {
    use vaepipe::models::mtcnn;
    let weights = mtcnn::default_weights_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mtcnn");
    std::fs::create_dir_all(&dir).unwrap();
    for net in ["rnet", "onet"] {
        let from = weights.join(format!("{net}.pt"));
        std::fs::copy(&from, dir.join(format!("{net}.pt"))).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run scripts/fetch-mtcnn.sh, as bootstrap.sh does)",
                from.display()
            )
        });
    }
    // P-Net is the file mutated (the smallest: 30 KB); the import reads all three, maps the
    // names and checks every variable's shape against the nets `align` builds.
    let seed = std::fs::read(weights.join("pnet.pt")).unwrap();
    let cap = 8 * std::fs::read(weights.join("onet.pt")).unwrap().len();
    let t = fuzz_file(
        "mtcnn import",
        &[seed],
        4096,
        &dir.join("pnet.pt"),
        (17, 80, cap),
        |path| {
            let dir = path.parent().unwrap();
            let tensors = mtcnn::read_weights(dir).map_err(|e| e.to_string())?;
            let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
            mtcnn::load(&mut vs, &tensors, path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    assert!(t.accepted > 0 && t.rejected > 0, "{t:?}");
}

/// A committed manifest and a lock file, written by the real binary for a one-stage experiment.
fn manifest_and_lock() -> (Vec<u8>, Vec<u8>) {
    let p = crate::support::Project::new();
    p.file(
        "faces.toml",
        "[experiment]\nname = \"faces\"\nseed = 3\n\n[stage.faces]\nkind = \"synth-faces\"\nceleba_images = 24\nceleba_identities = 6\nidentities = 2\nimages_per_identity = 4\n",
    );
    p.ok(&["run", "faces.toml"]);
    p.ok(&["lock", "faces.toml"]);
    let manifests = crate::support::find_named(&p.path("cache/entries"), "manifest.json");
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    (
        std::fs::read(&manifests[0]).unwrap(),
        std::fs::read(p.path("faces.toml.lock")).unwrap(),
    )
}

#[test]
fn manifests_and_lock_files_survive_seeded_mutations() {
    use vaepipe_engine::cache::Manifest;
    use vaepipe_engine::lock::LockFile;
    let (manifest, lock) = manifest_and_lock();
    let tmp = tempfile::tempdir().unwrap();
    // A mutated manifest is "no valid entry" (a miss, recomputed), never a panic; it has no
    // message of its own, so the loop asks only that the reader returns.
    let t = fuzz_file(
        "manifest",
        &[manifest],
        1 << 20,
        &tmp.path().join("manifest.json"),
        (18, 2000, 1 << 20),
        |path| match Manifest::read(path.parent().unwrap(), None) {
            Some(_) => Ok(()),
            None => Err(format!("{}: not a valid manifest", path.display())),
        },
    );
    assert!(t.accepted > 0 && t.rejected > 0, "{t:?}");
    let t = fuzz_file(
        "lock file",
        &[lock],
        1 << 20,
        &tmp.path().join("faces.toml.lock"),
        (19, 2000, 1 << 20),
        |path| LockFile::read(path).map(|_| ()).map_err(|e| e.to_string()),
    );
    assert!(t.accepted > 0 && t.rejected > 0, "{t:?}");
}
