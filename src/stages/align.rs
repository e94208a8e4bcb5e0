//! Stage `align`: raw photos in, facenet-aligned faces out — what facenet's
//! `align_dataset_mtcnn.py` does (MTCNN with the original's pretrained weights, the face it
//! keeps, `margin/2` per side, a bilinear resize to `image_size`), so `smile.toml` can start
//! from raw CASIA-WebFace and raw CelebA `img_celeba` as the published commands do.
//!
//! Two layouts in, the same layout out:
//! - identity folders `<id>/<image>` → `<id>/<stem>.png` (always PNG, as the original);
//! - a CelebA root with `img_celeba/` and `list_attr_celeba.txt` → an aligned CelebA root
//!   (`img_align_celeba/<stem>.png` plus the attribute, partition and identity files with the
//!   rows of failed images dropped).
//!
//! Beside the images: `bounding_boxes.txt` (the original's format, paths relative to the
//! artifact), `failed.txt` (`<input>\t<reason>` for each image left out) and `summary.json`
//! (detected, no face, several faces, errors), which also go into the manifest's notes.
//!
//! Workers (one per thread on the CPU, one on a GPU) each own a copy of the nets and decode,
//! detect and write one image at a time. Every finished image is recorded in the partial
//! directory before the next is taken, so an interrupted run resumes where it stopped and
//! never redoes or loses an aligned face.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Tensor};
use vaepipe_engine::stage::{ParamIssue, Role, Stage, StageCx};
use vaepipe_facedata::celeba;

use crate::align::{self, crop, DetectParams, Planar};
use crate::models::mtcnn;

pub struct Align;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlignParams {
    /// Side of the aligned square image (`--image_size`).
    pub image_size: u32,
    /// Pixels added around the box, half on each side (`--margin`).
    pub margin: u32,
    /// The smallest face the pyramid looks for (`minsize`).
    pub min_face_size: f64,
    /// P-Net, R-Net, O-Net face-probability thresholds.
    pub thresholds: [f64; 3],
    /// Pyramid scale step.
    pub factor: f64,
    /// Write every face as `<stem>_0.png`, `<stem>_1.png`, … instead of the one the original keeps.
    pub detect_multiple_faces: bool,
}

impl Default for AlignParams {
    fn default() -> Self {
        let d = DetectParams::default();
        AlignParams {
            image_size: 182,
            margin: 44,
            min_face_size: d.min_size,
            thresholds: d.thresholds,
            factor: d.factor,
            detect_multiple_faces: false,
        }
    }
}

/// Images above this many pixels are refused before decoding (bounded memory).
const MAX_PIXELS: u64 = 100_000_000;

impl Stage for Align {
    const KIND: &'static str = "align";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "detects and aligns faces with MTCNN as facenet's align_dataset_mtcnn.py";
    type Params = AlignParams;

    fn roles() -> &'static [Role] {
        &[
            Role {
                name: "dataset",
                required: true,
                doc: "raw images: identity folders, or a CelebA root with img_celeba/ and list_attr_celeba.txt",
            },
            Role {
                name: "weights",
                required: true,
                doc: "MTCNN weights: the directory scripts/fetch-mtcnn.sh fills (pnet/rnet/onet.pt) or a .safetensors from `vaepipe import-weights --what mtcnn`",
            },
        ]
    }

    fn validate(p: &Self::Params) -> Vec<ParamIssue> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, message: String| {
            issues.push(ParamIssue {
                path: path.into(),
                message,
                help: None,
            })
        };
        if p.image_size == 0 {
            bad("image_size", "`image_size` must be at least 1".into());
        }
        if p.min_face_size.is_nan() || p.min_face_size < 1.0 {
            bad(
                "min_face_size",
                format!(
                    "`min_face_size` must be at least 1 pixel, got {}",
                    p.min_face_size
                ),
            );
        }
        if p.factor.is_nan() || p.factor <= 0.0 || p.factor >= 1.0 {
            bad(
                "factor",
                format!(
                    "`factor` must be between 0 and 1 (exclusive), got {}",
                    p.factor
                ),
            );
        }
        if p.thresholds.iter().any(|t| !(0.0..=1.0).contains(t)) {
            bad(
                "thresholds",
                format!(
                    "each threshold is a probability in [0, 1], got {:?}",
                    p.thresholds
                ),
            );
        }
        issues
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        let dataset = cx.require_input("dataset")?.to_path_buf();
        let weights_path = cx.require_input("weights")?.to_path_buf();
        let tensors = mtcnn::read_weights(&weights_path).with_context(|| {
            format!(
                "cannot read MTCNN weights from {} (run scripts/fetch-mtcnn.sh, or point `from.weights` at a directory with pnet.pt, rnet.pt, onet.pt)",
                weights_path.display()
            )
        })?;
        let plan = Plan::of(&dataset)?;
        for empty in &plan.empty_identities {
            tracing::warn!(
                "stage `{}`: identity folder `{empty}` has no images",
                cx.stage_name()
            );
        }
        let device = crate::device::for_stage(cx)?;
        let workers = if device == Device::Cpu {
            cx.options()
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        } else {
            1
        };

        let partial = cx.partial_dir().to_path_buf();
        let files = partial.join("files");
        std::fs::create_dir_all(&files)?;
        let progress_path = partial.join("progress.jsonl");
        let mut done = read_progress(&progress_path)?;
        if !done.is_empty() {
            tracing::info!(
                "stage `{}`: resuming, {} of {} images already done",
                cx.stage_name(),
                done.len(),
                plan.jobs.len()
            );
        }
        let todo: Vec<usize> = (0..plan.jobs.len())
            .filter(|&i| !done.contains_key(&plan.jobs[i].input))
            .collect();
        for dir in &plan.output_dirs {
            std::fs::create_dir_all(files.join(dir))?;
        }

        let settings = Settings {
            detect: DetectParams {
                min_size: p.min_face_size,
                thresholds: p.thresholds,
                factor: p.factor,
            },
            image_size: p.image_size as usize,
            margin: p.margin,
            multiple: p.detect_multiple_faces,
        };
        let bar =
            crate::train::metrics::progress_bar(cx, plan.jobs.len() as u64, done.len() as u64);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = crossbeam_channel::unbounded::<Record>();
        let previous_threads = tch::get_num_threads();
        if workers > 1 {
            // Parallel over images, not inside each small convolution.
            tch::set_num_threads(1);
        }
        let mut progress = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&progress_path)
            .with_context(|| format!("cannot write {}", progress_path.display()))?;
        let outcome = std::thread::scope(|scope| -> Result<()> {
            let mut handles = Vec::new();
            for _ in 0..workers.min(todo.len().max(1)) {
                let copies: HashMap<String, Tensor> =
                    tensors.iter().map(|(k, t)| (k.clone(), t.copy())).collect();
                let (tx, next, stop, todo, plan, settings, files, weights_path) = (
                    tx.clone(),
                    &next,
                    &stop,
                    &todo,
                    &plan,
                    &settings,
                    &files,
                    &weights_path,
                );
                handles.push(scope.spawn(move || -> Result<()> {
                    let mut vs = VarStore::new(device);
                    let nets = mtcnn::load(&mut vs, &copies, weights_path)?;
                    drop(copies);
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&job) = todo.get(k) else {
                            return Ok(());
                        };
                        let record =
                            align_one(&nets, &plan.jobs[job], plan, settings, files, device);
                        if tx.send(record).is_err() {
                            return Ok(());
                        }
                    }
                }));
            }
            drop(tx);
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(record) => {
                        writeln!(progress, "{}", serde_json::to_string(&record)?)?;
                        progress.flush()?;
                        bar.inc(1);
                        done.insert(record.input.clone(), record);
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
                if cx.cancelled() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            for h in handles {
                match h.join() {
                    Ok(r) => r?,
                    Err(_) => bail!("an align worker panicked"),
                }
            }
            Ok(())
        });
        tch::set_num_threads(previous_threads);
        bar.finish_and_clear();
        outcome?;
        if cx.cancelled() {
            bail!(
                "interrupted after {} of {} images; they are kept in {} and the next run continues from there",
                done.len(),
                plan.jobs.len(),
                partial.display()
            );
        }
        let summary = finish(&plan, &done, &files, cx.out_dir())?;
        tracing::info!(
            "stage `{}`: {} images: {} aligned, {} without a face, {} with several faces, {} errors",
            cx.stage_name(),
            summary.images,
            summary.detected,
            summary.no_face,
            summary.several_faces,
            summary.errors
        );
        cx.note("detected", summary.detected);
        cx.note("no_face", summary.no_face);
        cx.note("several_faces", summary.several_faces);
        cx.note("errors", summary.errors);
        Ok(())
    }
}

/// Which layout the dataset has, every image to align and where its face goes.
struct Plan {
    root: PathBuf,
    jobs: Vec<Job>,
    /// Output directories to create even if nothing lands in them (the original does).
    output_dirs: Vec<String>,
    empty_identities: Vec<String>,
    /// For CelebA: the row name of each input, to filter the text files.
    celeba: bool,
}

#[derive(Clone, Debug)]
struct Job {
    /// Path relative to the dataset root (`0000045/001.jpg`, `img_celeba/000001.jpg`).
    input: String,
    /// Output path without extension, relative to the artifact (`0000045/001`).
    output_stem: String,
    /// The attribute-file row name (CelebA only).
    row: Option<String>,
}

impl Plan {
    fn of(root: &Path) -> Result<Plan> {
        let raw_celeba = root.join("img_celeba");
        if root.join(celeba::ATTR_FILE).is_file() && raw_celeba.is_dir() {
            let table = celeba::read_attribute_file(&root.join(celeba::ATTR_FILE))?;
            let on_disk: BTreeMap<String, String> = std::fs::read_dir(&raw_celeba)
                .with_context(|| format!("cannot list {}", raw_celeba.display()))?
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .map(|n| (stem(&n).to_owned(), n))
                .collect();
            let jobs = table
                .rows
                .iter()
                .map(|r| Job {
                    input: format!(
                        "img_celeba/{}",
                        on_disk.get(stem(&r.file_name)).unwrap_or(&r.file_name)
                    ),
                    output_stem: format!("{}/{}", celeba::IMAGE_DIR, stem(&r.file_name)),
                    row: Some(r.file_name.clone()),
                })
                .collect();
            return Ok(Plan {
                root: root.to_owned(),
                jobs,
                output_dirs: vec![celeba::IMAGE_DIR.into()],
                empty_identities: Vec::new(),
                celeba: true,
            });
        }
        let folders = vaepipe_facedata::IdentityFolders::open(root)?;
        if folders.identities.is_empty() {
            bail!(
                "{} has no identity folders and is no CelebA root (img_celeba/ + {}): nothing to align",
                root.display(),
                celeba::ATTR_FILE
            );
        }
        let mut jobs = Vec::new();
        let mut empty = Vec::new();
        for id in &folders.identities {
            if id.images.is_empty() {
                empty.push(id.name.clone());
            }
            for img in &id.images {
                jobs.push(Job {
                    input: format!("{}/{img}", id.name),
                    output_stem: format!("{}/{}", id.name, stem(img)),
                    row: None,
                });
            }
        }
        Ok(Plan {
            root: root.to_owned(),
            jobs,
            output_dirs: folders.identities.iter().map(|i| i.name.clone()).collect(),
            empty_identities: empty,
            celeba: false,
        })
    }
}

/// The file name without its (last) extension, as `os.path.splitext`.
fn stem(name: &str) -> &str {
    Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
}

struct Settings {
    detect: DetectParams,
    image_size: usize,
    margin: u32,
    multiple: bool,
}

/// What happened to one input image (one line of `progress.jsonl`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    input: String,
    faces: usize,
    /// Each written image (relative to the artifact) with its crop box.
    outputs: Vec<(String, [u32; 4])>,
    /// Why nothing was written: set for errors and for images with no face.
    failure: Option<String>,
    /// True when the image could not be read (as opposed to having no face).
    error: bool,
}

fn align_one(
    nets: &mtcnn::Mtcnn,
    job: &Job,
    plan: &Plan,
    s: &Settings,
    files: &Path,
    device: Device,
) -> Record {
    let mut record = Record {
        input: job.input.clone(),
        faces: 0,
        outputs: Vec::new(),
        failure: None,
        error: false,
    };
    let path = plan.root.join(&job.input);
    let img = match decode(&path) {
        Ok(img) => img,
        Err(reason) => {
            record.failure = Some(reason);
            record.error = true;
            return record;
        }
    };
    let detected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        align::detect_faces(nets, &img, &s.detect, device)
    }));
    let faces = match detected {
        Ok(f) => f,
        Err(_) => {
            record.failure = Some("face detection failed (internal error)".into());
            record.error = true;
            return record;
        }
    };
    record.faces = faces.len();
    let chosen: Vec<usize> = if s.multiple {
        (0..faces.len()).collect()
    } else {
        crop::choose_face(&faces, img.width, img.height)
            .into_iter()
            .collect()
    };
    if chosen.is_empty() {
        record.failure = Some(if img.width.min(img.height) < s.detect.min_size as usize {
            format!(
                "no face: the image ({}x{}) is smaller than the {}-px minimum face",
                img.width, img.height, s.detect.min_size
            )
        } else {
            "no face found".into()
        });
        return record;
    }
    for (i, &k) in chosen.iter().enumerate() {
        let Some(b) = crop::crop_box(&faces[k], s.margin, img.width, img.height) else {
            continue;
        };
        let aligned = align::aligned_crop(&img, &b, s.image_size);
        let rel = if s.multiple {
            format!("{}_{i}.png", job.output_stem)
        } else {
            format!("{}.png", job.output_stem)
        };
        if let Err(e) = write_png(&files.join(&rel), &aligned) {
            record.failure = Some(format!("cannot write {rel}: {e}"));
            record.error = true;
            return record;
        }
        record.outputs.push((rel, [b.x1, b.y1, b.x2, b.y2]));
    }
    if record.outputs.is_empty() {
        record.failure = Some("the face box lies outside the image".into());
    }
    record
}

/// Decodes an image as RGB uint8 the way `misc.imread` + `to_rgb` + `[:, :, 0:3]` do (grey
/// replicated, alpha dropped), or says why not, in align-check's words.
fn decode(path: &Path) -> std::result::Result<Planar<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.is_empty() {
        return Err("zero bytes".into());
    }
    let format = image::guess_format(&bytes).map_err(|_| "not an image".to_string())?;
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("cannot decode: {e}"))?;
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(format!("too large: {w}x{h} is over {MAX_PIXELS} pixels"));
    }
    let decoded = std::panic::catch_unwind(|| {
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_PIXELS * 4);
        reader.limits(limits);
        reader.decode()
    })
    .map_err(|_| "cannot decode: the decoder panicked".to_string())?
    .map_err(|e| {
        let detail = e.to_string();
        if detail.to_lowercase().contains("eof") || detail.to_lowercase().contains("end of") {
            format!("truncated: {detail}")
        } else {
            format!("cannot decode: {detail}")
        }
    })?;
    use image::ColorType as C;
    if !matches!(decoded.color(), C::L8 | C::La8 | C::Rgb8 | C::Rgba8) {
        return Err(format!("unsupported depth: {:?}", decoded.color()));
    }
    let rgb = decoded.to_rgb8();
    Ok(Planar {
        height: rgb.height() as usize,
        width: rgb.width() as usize,
        channels: 3,
        data: rgb.into_raw(),
    })
}

/// Writes a PNG through a temporary name, so a file that exists is complete.
fn write_png(path: &Path, img: &Planar<u8>) -> Result<()> {
    let tmp = path.with_extension("png.tmp");
    image::save_buffer_with_format(
        &tmp,
        &img.data,
        img.width as u32,
        img.height as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Every record of an earlier, interrupted run whose files are all still there.
fn read_progress(path: &Path) -> Result<HashMap<String, Record>> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(out);
    };
    let files = path.with_file_name("files");
    for line in text.lines() {
        // A torn last line (killed mid-write) is simply redone.
        let Ok(record) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        if record
            .outputs
            .iter()
            .all(|(rel, _)| files.join(rel).is_file())
        {
            out.insert(record.input.clone(), record);
        }
    }
    Ok(out)
}

/// The counts `run` reports.
#[derive(Debug, Default, Serialize)]
struct Summary {
    images: usize,
    detected: usize,
    no_face: usize,
    several_faces: usize,
    errors: usize,
    aligned_files: usize,
}

/// Moves the aligned images into the artifact and writes the text files.
fn finish(
    plan: &Plan,
    done: &HashMap<String, Record>,
    files: &Path,
    out: &Path,
) -> Result<Summary> {
    let mut summary = Summary {
        images: plan.jobs.len(),
        ..Summary::default()
    };
    let mut boxes = String::new();
    let mut failed = String::new();
    let mut kept_rows = BTreeSet::new();
    for job in &plan.jobs {
        let Some(r) = done.get(&job.input) else {
            bail!("internal error: no result for {}", job.input);
        };
        if r.faces > 1 {
            summary.several_faces += 1;
        }
        if r.outputs.is_empty() {
            if r.error {
                summary.errors += 1;
            } else {
                summary.no_face += 1;
            }
            boxes.push_str(&format!("{}.png\n", job.output_stem));
            failed.push_str(&format!(
                "{}\t{}\n",
                job.input,
                r.failure.as_deref().unwrap_or("no face found")
            ));
            continue;
        }
        summary.detected += 1;
        summary.aligned_files += r.outputs.len();
        if let Some(row) = &job.row {
            kept_rows.insert(row.clone());
        }
        for (rel, [x1, y1, x2, y2]) in &r.outputs {
            boxes.push_str(&format!("{rel} {x1} {y1} {x2} {y2}\n"));
        }
    }
    for entry in std::fs::read_dir(files)? {
        let entry = entry?;
        std::fs::rename(entry.path(), out.join(entry.file_name()))?;
    }
    std::fs::write(out.join("bounding_boxes.txt"), boxes)?;
    std::fs::write(out.join("failed.txt"), failed)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    if plan.celeba {
        copy_rows(&plan.root, out, celeba::ATTR_FILE, &kept_rows, true)?;
        for name in [celeba::PARTITION_FILE, celeba::IDENTITY_FILE] {
            if plan.root.join(name).is_file() {
                copy_rows(&plan.root, out, name, &kept_rows, false)?;
            }
        }
    }
    Ok(summary)
}

/// Copies a CelebA text file keeping only the rows of `kept` images, in the file's order and
/// format; the attribute file's first line (the row count) is rewritten.
fn copy_rows(
    from: &Path,
    to: &Path,
    name: &str,
    kept: &BTreeSet<String>,
    has_header: bool,
) -> Result<()> {
    let path = from.join(name);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let mut body = Vec::new();
    let mut header = None;
    if has_header {
        lines.next();
        header = lines.next();
    }
    for line in lines {
        let first = line.split_whitespace().next().unwrap_or("");
        if kept.contains(first) {
            body.push(line);
        }
    }
    let mut out = String::new();
    if let Some(h) = header {
        out.push_str(&format!("{}\n{h}\n", body.len()));
    }
    for line in body {
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(to.join(name), out)?;
    Ok(())
}

/// Decodes, detects and crops every image of `paths` on `workers` threads as `run` does, without
/// writing anything; returns how many images gave a face. For `vaepipe bench align`.
pub fn align_in_memory(
    paths: &[PathBuf],
    tensors: &HashMap<String, Tensor>,
    weights: &Path,
    params: &AlignParams,
    workers: usize,
) -> Result<usize> {
    let detect = DetectParams {
        min_size: params.min_face_size,
        thresholds: params.thresholds,
        factor: params.factor,
    };
    let next = AtomicUsize::new(0);
    let found = AtomicUsize::new(0);
    let previous_threads = tch::get_num_threads();
    if workers > 1 {
        tch::set_num_threads(1);
    }
    let result = std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        for _ in 0..workers.max(1) {
            let copies: HashMap<String, Tensor> =
                tensors.iter().map(|(k, t)| (k.clone(), t.copy())).collect();
            let (next, found, detect) = (&next, &found, &detect);
            handles.push(scope.spawn(move || -> Result<()> {
                let mut vs = VarStore::new(Device::Cpu);
                let nets = mtcnn::load(&mut vs, &copies, weights)?;
                while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let Ok(img) = decode(path) else { continue };
                    let faces = align::detect_faces(&nets, &img, detect, Device::Cpu);
                    if let Some(k) = crop::choose_face(&faces, img.width, img.height) {
                        if let Some(b) =
                            crop::crop_box(&faces[k], params.margin, img.width, img.height)
                        {
                            std::hint::black_box(align::aligned_crop(
                                &img,
                                &b,
                                params.image_size as usize,
                            ));
                            found.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a bench worker panicked"))??;
        }
        Ok(())
    });
    tch::set_num_threads(previous_threads);
    result?;
    Ok(found.into_inner())
}
