//! `align-check`: decodes every image of a dataset in parallel and reports what is wrong with it,
//! before a four-hour training run finds out.
//!
//! Each file gets at most one [`Problem`]. Problems that make a file unusable (zero bytes,
//! truncated, not an image, undecodable, a header claiming more pixels than
//! [`Expectation::limits`], wrong size, smaller than the crop) exclude it; problems the pipeline
//! handles the way TF's `decode_image(channels=3)` does (grayscale, alpha or 16-bit samples
//! converted to 8-bit RGB, an extension that doesn't match the content) are warnings. Decoding
//! itself is `decode.rs`'s, shared with every other entry point. With [`OnBad::Skip`] the sorted excluded list (`excluded.txt`) is part of the
//! artifact, so downstream stages that read it get a new key when the set changes; with
//! [`OnBad::Fail`] any exclusion is an error. Nothing here panics on a file: decoder panics are
//! caught and reported. [`check_cancellable`] stops between files when asked (Ctrl-C, SIGTERM). Listing the dataset is `celeba.rs` / `casia.rs`'s job.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use image::{ExtendedColorType, ImageFormat};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::decode::{self, DecodeError, DecodeLimits};
use crate::error::{Error, Result};

/// What to do with files that must be excluded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBad {
    /// Any excluded file fails the check.
    #[default]
    Fail,
    /// Excluded files are listed in `excluded.txt` and left out downstream.
    Skip,
}

/// What the images should look like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Expectation {
    /// Exact (width, height), if the layout fixes it (CelebA 178×218, aligned CASIA 182×182).
    pub size: Option<(u32, u32)>,
    /// The centre crop training takes; a smaller image would be zero-padded.
    pub crop: u32,
    /// Files whose header claims more pixels are excluded without being decoded.
    pub limits: DecodeLimits,
}

impl Default for Expectation {
    fn default() -> Self {
        Expectation {
            size: None,
            crop: 160,
            limits: DecodeLimits::DEFAULT,
        }
    }
}

/// The files to check: paths relative to `root`, each with an optional identity label.
#[derive(Clone, Debug, Default)]
pub struct FileSet {
    pub root: PathBuf,
    /// (path relative to root, identity) in the dataset's (sorted) order.
    pub files: Vec<(String, Option<String>)>,
}

impl FileSet {
    /// Every image of a CelebA directory (identity from `identity_CelebA.txt` when present).
    pub fn from_celeba(c: &crate::CelebA) -> FileSet {
        FileSet {
            root: c.dir.clone(),
            files: c
                .rows
                .iter()
                .map(|r| {
                    (
                        format!("{}/{}", crate::celeba::IMAGE_DIR, r.image_file),
                        r.identity.map(|i| i.to_string()),
                    )
                })
                .collect(),
        }
    }

    /// Every image of an identity-folder dataset, labelled by folder.
    pub fn from_identity_folders(f: &crate::IdentityFolders) -> FileSet {
        FileSet {
            root: f.dir.clone(),
            files: f
                .identities
                .iter()
                .flat_map(|id| {
                    id.images
                        .iter()
                        .map(move |img| (format!("{}/{img}", id.name), Some(id.name.clone())))
                })
                .collect(),
        }
    }
}

/// Why a file is reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    ZeroBytes,
    /// The format is recognised but the data ends early (no JPEG EOI / PNG IEND, or EOF in decode).
    Truncated {
        detail: String,
    },
    /// The bytes are no image format the pipeline reads.
    NotAnImage,
    /// The format is recognised but the decoder rejects the data.
    Corrupt {
        detail: String,
    },
    /// The extension names another format than the content (decoded by content, like TF).
    WrongExtension {
        extension: String,
        format: String,
    },
    /// Samples the uint8 pipeline cannot take (floating point, an unknown layout).
    UnsupportedDepth {
        color: String,
    },
    /// The header claims more pixels than the limits allow; the file was not decoded.
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    /// Converted to RGB on decode, as `decode_image(channels=3)` does.
    Converted {
        from: String,
    },
    WrongSize {
        width: u32,
        height: u32,
        expected: (u32, u32),
    },
    SmallerThanCrop {
        width: u32,
        height: u32,
        crop: u32,
    },
    /// The file could not be read at all.
    Unreadable {
        detail: String,
    },
}

impl Problem {
    /// Whether the file is left out of the dataset (else it is a warning).
    pub fn excludes(&self) -> bool {
        !matches!(
            self,
            Problem::WrongExtension { .. } | Problem::Converted { .. }
        )
    }

    fn describe(&self) -> String {
        match self {
            Problem::ZeroBytes => "zero bytes".into(),
            Problem::Truncated { detail } => format!("truncated: {detail}"),
            Problem::NotAnImage => "not an image".into(),
            Problem::Corrupt { detail } => format!("cannot decode: {detail}"),
            Problem::WrongExtension { extension, format } => {
                format!("extension `.{extension}` but the content is {format} (decoded by content)")
            }
            Problem::UnsupportedDepth { color } => format!("unsupported depth: {color}"),
            Problem::Converted { from } => format!("{from} converted to 8-bit RGB"),
            Problem::TooLarge {
                width,
                height,
                max_side,
                max_pixels,
            } => DecodeError::TooLarge {
                width: *width,
                height: *height,
                limits: DecodeLimits {
                    max_side: *max_side,
                    max_pixels: *max_pixels,
                },
            }
            .to_string(),
            Problem::WrongSize {
                width,
                height,
                expected,
            } => {
                format!(
                    "size {width}x{height}, expected {}x{}",
                    expected.0, expected.1
                )
            }
            Problem::SmallerThanCrop {
                width,
                height,
                crop,
            } => {
                format!("size {width}x{height} is smaller than the {crop}x{crop} crop")
            }
            Problem::Unreadable { detail } => format!("cannot read: {detail}"),
        }
    }
}

/// One reported file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Path relative to the dataset root.
    pub path: String,
    pub problem: Problem,
    pub excluded: bool,
    pub reason: String,
}

/// The result of [`check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub expectation: Expectation,
    pub total: usize,
    /// Files that stay in the dataset (including warnings).
    pub usable: usize,
    pub excluded: usize,
    pub warnings: usize,
    /// "WxH" → count, over every decodable file.
    pub size_histogram: BTreeMap<String, usize>,
    /// Identity → usable image count (empty when the set has no identities).
    pub per_identity: BTreeMap<String, usize>,
    /// Every reported file, sorted by path.
    pub files: Vec<FileReport>,
}

/// Decodes every file of `set` on the current rayon pool and reports.
pub fn check(set: &FileSet, expect: &Expectation) -> Report {
    let results: Vec<Inspection> = set
        .files
        .par_iter()
        .map(|(rel, _)| inspect(&set.root.join(rel), expect))
        .collect();
    assemble(set, expect, results)
}

/// Like [`check`], but returns `None` soon after `cancel` is set: each file is looked at only
/// while it is clear, so the wait is at most one decode per thread (bounded by the limits).
pub fn check_cancellable(
    set: &FileSet,
    expect: &Expectation,
    cancel: &AtomicBool,
) -> Option<Report> {
    let results: Vec<Inspection> = set
        .files
        .par_iter()
        .map(|(rel, _)| {
            (!cancel.load(Ordering::Relaxed)).then(|| inspect(&set.root.join(rel), expect))
        })
        .collect::<Option<Vec<_>>>()?;
    if cancel.load(Ordering::Relaxed) {
        return None;
    }
    Some(assemble(set, expect, results))
}

fn assemble(set: &FileSet, expect: &Expectation, results: Vec<Inspection>) -> Report {
    let mut report = Report {
        expectation: expect.clone(),
        total: set.files.len(),
        usable: 0,
        excluded: 0,
        warnings: 0,
        size_histogram: BTreeMap::new(),
        per_identity: BTreeMap::new(),
        files: Vec::new(),
    };
    for ((rel, identity), (size, problem)) in set.files.iter().zip(results) {
        if let Some((w, h)) = size {
            *report.size_histogram.entry(format!("{w}x{h}")).or_default() += 1;
        }
        let excluded = problem.as_ref().is_some_and(Problem::excludes);
        if let Some(problem) = problem {
            if excluded {
                report.excluded += 1;
            } else {
                report.warnings += 1;
            }
            report.files.push(FileReport {
                path: rel.clone(),
                reason: problem.describe(),
                problem,
                excluded,
            });
        }
        if !excluded {
            report.usable += 1;
        }
        if let Some(id) = identity {
            let e = report.per_identity.entry(id.clone()).or_default();
            *e += (!excluded) as usize;
        }
    }
    report.files.sort_by(|a, b| a.path.cmp(&b.path));
    report
}

/// One file's size (if decodable) and its problem, if any.
type Inspection = (Option<(u32, u32)>, Option<Problem>);

/// Looks at one file.
fn inspect(path: &Path, expect: &Expectation) -> Inspection {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return (
                None,
                Some(Problem::Unreadable {
                    detail: e.to_string(),
                }),
            )
        }
    };
    if bytes.is_empty() {
        return (None, Some(Problem::ZeroBytes));
    }
    let Ok(format) = image::guess_format(&bytes) else {
        return (None, Some(Problem::NotAnImage));
    };
    if !ends_complete(format, &bytes) {
        return (
            None,
            Some(Problem::Truncated {
                detail: end_marker(format).into(),
            }),
        );
    }
    let decoded = match decode::decode_image(&bytes, &expect.limits) {
        Ok(d) => d,
        Err(e) => {
            let problem = match e {
                DecodeError::NotAnImage => Problem::NotAnImage,
                DecodeError::TooLarge {
                    width,
                    height,
                    limits,
                } => Problem::TooLarge {
                    width,
                    height,
                    max_side: limits.max_side,
                    max_pixels: limits.max_pixels,
                },
                DecodeError::UnsupportedColor(color) => Problem::UnsupportedDepth { color },
                DecodeError::Truncated(detail) => Problem::Truncated { detail },
                DecodeError::Corrupt(detail) => Problem::Corrupt { detail },
            };
            return (None, Some(problem));
        }
    };
    let original = decoded.original;
    let (w, h) = (decoded.rgb.width(), decoded.rgb.height());
    let size = Some((w, h));
    let problem = if expect.size.is_some_and(|s| s != (w, h)) {
        Some(Problem::WrongSize {
            width: w,
            height: h,
            expected: expect.size.unwrap_or((w, h)),
        })
    } else if w < expect.crop || h < expect.crop {
        Some(Problem::SmallerThanCrop {
            width: w,
            height: h,
            crop: expect.crop,
        })
    } else if let Some(from) = converted_from(original) {
        Some(Problem::Converted { from })
    } else {
        wrong_extension(path, format)
    };
    (size, problem)
}

fn end_marker(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "no JPEG end-of-image marker",
        ImageFormat::Png => "no PNG IEND chunk",
        _ => "data ends early",
    }
}

/// JPEG must end with EOI (FF D9), PNG with the IEND chunk; trailing zero padding is tolerated.
fn ends_complete(format: ImageFormat, bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let data = &bytes[..end];
    match format {
        ImageFormat::Jpeg => data.ends_with(&[0xFF, 0xD9]),
        ImageFormat::Png => bytes.windows(4).rev().take(64).any(|w| w == b"IEND"),
        _ => true,
    }
}

fn converted_from(c: ExtendedColorType) -> Option<String> {
    use ExtendedColorType as E;
    match c {
        E::Rgb8 | E::Bgr8 | E::Rgb1 | E::Rgb2 | E::Rgb4 | E::Unknown(8) => None,
        E::Rgb16 => Some("16-bit RGB".into()),
        E::Rgba16 => Some("16-bit RGBA (alpha dropped)".into()),
        E::L16 => Some("16-bit grayscale".into()),
        E::La16 => Some("16-bit grayscale with alpha (alpha dropped)".into()),
        E::Cmyk8 => Some("CMYK".into()),
        E::L8 | E::L1 | E::L2 | E::L4 => Some("grayscale".into()),
        E::La8 | E::La1 | E::La2 | E::La4 => Some("grayscale with alpha".into()),
        other => Some(format!("{other:?} (alpha dropped)")),
    }
}

fn wrong_extension(path: &Path, format: ImageFormat) -> Option<Problem> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let matches = format.extensions_str().iter().any(|e| *e == ext);
    (!matches).then(|| Problem::WrongExtension {
        extension: ext,
        format: format!("{format:?}").to_uppercase(),
    })
}

impl Report {
    /// Sorted relative paths of the excluded files (the content of `excluded.txt`).
    pub fn excluded_paths(&self) -> Vec<&str> {
        self.files
            .iter()
            .filter(|f| f.excluded)
            .map(|f| f.path.as_str())
            .collect()
    }

    /// With [`OnBad::Fail`], an error listing the first excluded files; with Skip, Ok.
    pub fn enforce(&self, on_bad: OnBad, root: &Path) -> Result<()> {
        if on_bad == OnBad::Skip || self.excluded == 0 {
            return Ok(());
        }
        let mut message = format!(
            "{} of {} images are unusable (on_bad = \"fail\"):",
            self.excluded, self.total
        );
        for f in self.files.iter().filter(|f| f.excluded).take(5) {
            let _ = write!(message, "\n  {}: {}", f.path, f.reason);
        }
        if self.excluded > 5 {
            let _ = write!(
                message,
                "\n  … and {} more (see report.txt)",
                self.excluded - 5
            );
        }
        message.push_str("\nhelp: fix or remove them, or set on_bad = \"skip\" to leave them out");
        Err(Error::Dataset {
            path: root.to_owned(),
            message,
        })
    }

    /// The readable report.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "align-check: {} images, {} usable, {} excluded, {} warnings",
            self.total, self.usable, self.excluded, self.warnings
        );
        match self.expectation.size {
            Some((w, h)) => {
                let _ = writeln!(t, "expected size {w}x{h}, crop {}", self.expectation.crop);
            }
            None => {
                let _ = writeln!(t, "expected size any, crop {}", self.expectation.crop);
            }
        }
        let _ = writeln!(t, "\nsizes:");
        for (s, n) in &self.size_histogram {
            let _ = writeln!(t, "  {s:>11}  {n}");
        }
        if !self.per_identity.is_empty() {
            let counts: Vec<usize> = self.per_identity.values().copied().collect();
            let (min, max) = (
                counts.iter().min().copied().unwrap_or(0),
                counts.iter().max().copied().unwrap_or(0),
            );
            let _ = writeln!(
                t,
                "\nidentities: {} (usable images per identity: min {min}, max {max})",
                counts.len()
            );
            for (id, n) in &self.per_identity {
                let _ = writeln!(t, "  {id}  {n}");
            }
        }
        if !self.files.is_empty() {
            let _ = writeln!(t, "\nfiles:");
            for f in &self.files {
                let tag = if f.excluded { "excluded" } else { "warning " };
                let _ = writeln!(t, "  {tag}  {}: {}", f.path, f.reason);
            }
        }
        t
    }

    /// Writes `report.json`, `report.txt` and `excluded.txt` (one relative path per line, sorted)
    /// into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Dataset {
            path: dir.join("report.json"),
            message: e.to_string(),
        })?;
        let put = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
        };
        put("report.json", json + "\n")?;
        put("report.txt", self.to_text())?;
        put(
            "excluded.txt",
            self.excluded_paths()
                .iter()
                .map(|p| format!("{p}\n"))
                .collect(),
        )?;
        Ok(())
    }
}

/// Reads an `excluded.txt` (as [`Report::write`] writes it) into a sorted set of relative paths.
pub fn read_excluded(path: &Path) -> Result<std::collections::BTreeSet<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn png_bytes(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([x as u8, y as u8, 9])
        }))
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap();
        out.into_inner()
    }

    /// Writes `files` under identity folders a/ and b/, checks them, returns path → reason.
    fn check_files(
        files: &[(&str, Vec<u8>)],
        expect: Expectation,
    ) -> (Report, BTreeMap<String, String>) {
        let d = tempfile::tempdir().unwrap();
        for (rel, bytes) in files {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let set = FileSet::from_identity_folders(&crate::IdentityFolders::open(d.path()).unwrap());
        let r = check(&set, &expect);
        let reasons = r
            .files
            .iter()
            .map(|f| (f.path.clone(), f.reason.clone()))
            .collect();
        (r, reasons)
    }

    fn rgb(w: u32, h: u32) -> image::DynamicImage {
        image::DynamicImage::ImageRgb8(image::RgbImage::new(w, h))
    }

    #[test]
    fn every_kind_of_bad_file() {
        let jpeg = jpeg_bytes(8, 8);
        let files = vec![
            ("a/ok.png", png_bytes(rgb(8, 8))),
            ("a/ok.jpg", jpeg.clone()),
            ("a/empty.png", vec![]),
            ("a/trunc.jpg", jpeg[..jpeg.len() / 2].to_vec()),
            ("a/trunc.png", png_bytes(rgb(8, 8))[..40].to_vec()),
            ("a/text.png", b"hello, not an image".to_vec()),
            ("b/named.jpg", png_bytes(rgb(8, 8))),
            (
                "b/deep.png",
                png_bytes(image::DynamicImage::ImageRgb16(image::ImageBuffer::new(
                    8, 8,
                ))),
            ),
            (
                "b/gray.png",
                png_bytes(image::DynamicImage::ImageLuma8(image::GrayImage::new(8, 8))),
            ),
            (
                "b/alpha.png",
                png_bytes(image::DynamicImage::ImageRgba8(image::RgbaImage::new(8, 8))),
            ),
            ("b/wide.png", png_bytes(rgb(9, 8))),
            ("b/small.png", png_bytes(rgb(4, 4))),
        ];
        let (r, reasons) = check_files(
            &files,
            Expectation {
                size: Some((8, 8)),
                crop: 6,
                ..Expectation::default()
            },
        );
        let get = |k: &str| reasons.get(k).cloned().unwrap_or_else(|| "ok".into());
        assert_eq!(get("a/ok.png"), "ok");
        assert_eq!(get("a/ok.jpg"), "ok");
        assert_eq!(get("a/empty.png"), "zero bytes");
        assert_eq!(get("a/trunc.jpg"), "truncated: no JPEG end-of-image marker");
        assert!(
            get("a/trunc.png").starts_with("truncated"),
            "{}",
            get("a/trunc.png")
        );
        assert_eq!(get("a/text.png"), "not an image");
        assert_eq!(
            get("b/named.jpg"),
            "extension `.jpg` but the content is PNG (decoded by content)"
        );
        // See: issue 15 (16-bit PNGs were excluded; they are scaled to 8 bits, as TF does).
        assert_eq!(get("b/deep.png"), "16-bit RGB converted to 8-bit RGB");
        assert_eq!(get("b/gray.png"), "grayscale converted to 8-bit RGB");
        assert_eq!(
            get("b/alpha.png"),
            "Rgba8 (alpha dropped) converted to 8-bit RGB"
        );
        assert_eq!(get("b/wide.png"), "size 9x8, expected 8x8");
        assert_eq!((r.total, r.excluded, r.warnings, r.usable), (12, 6, 4, 6));
        assert_eq!(r.per_identity["a"], 2);
        assert_eq!(r.per_identity["b"], 4);
        assert_eq!(r.size_histogram["8x8"], 6);
    }

    #[test]
    fn smaller_than_crop_without_a_size_expectation() {
        let (r, reasons) = check_files(
            &[("a/small.png", png_bytes(rgb(4, 5)))],
            Expectation {
                size: None,
                crop: 5,
                ..Expectation::default()
            },
        );
        assert_eq!(
            reasons["a/small.png"],
            "size 4x5 is smaller than the 5x5 crop"
        );
        assert_eq!(r.excluded_paths(), ["a/small.png"]);
    }

    #[test]
    fn write_and_enforce() {
        let (r, _) = check_files(
            &[
                ("b/x.png", vec![]),
                ("a/y.png", b"zz".to_vec()),
                ("a/ok.png", png_bytes(rgb(2, 2))),
            ],
            Expectation {
                size: None,
                crop: 2,
                ..Expectation::default()
            },
        );
        let d = tempfile::tempdir().unwrap();
        r.write(d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("excluded.txt")).unwrap(),
            "a/y.png\nb/x.png\n"
        );
        let text = std::fs::read_to_string(d.path().join("report.txt")).unwrap();
        assert!(
            text.starts_with("align-check: 3 images, 1 usable, 2 excluded, 0 warnings\n"),
            "{text}"
        );
        assert!(text.contains("  excluded  b/x.png: zero bytes\n"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["files"][0]["problem"]["kind"], "not_an_image");
        assert_eq!(
            read_excluded(&d.path().join("excluded.txt")).unwrap().len(),
            2
        );
        assert!(r.enforce(OnBad::Skip, d.path()).is_ok());
        let e = r
            .enforce(OnBad::Fail, Path::new("data"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "data: 2 of 3 images are unusable (on_bad = \"fail\"):\n  a/y.png: not an image"
            ),
            "{e}"
        );
    }

    #[test]
    fn synth_output_is_clean() {
        let d = tempfile::tempdir().unwrap();
        let p = crate::SynthParams {
            celeba_images: 4,
            celeba_identities: 2,
            identities: 2,
            images_per_identity: 2,
            ..Default::default()
        };
        crate::generate(d.path(), &p, 3).unwrap();
        let c = crate::CelebA::open(&d.path().join("celeba")).unwrap();
        let r = check(
            &FileSet::from_celeba(&c),
            &Expectation {
                size: Some((178, 218)),
                crop: 160,
                ..Expectation::default()
            },
        );
        assert_eq!(
            (r.total, r.usable, r.files.len()),
            (4, 4, 0),
            "{}",
            r.to_text()
        );
        let f = crate::IdentityFolders::open(&d.path().join("casia")).unwrap();
        let r = check(
            &FileSet::from_identity_folders(&f),
            &Expectation {
                size: Some((182, 182)),
                crop: 160,
                ..Expectation::default()
            },
        );
        assert_eq!(
            (r.total, r.usable, r.files.len()),
            (4, 4, 0),
            "{}",
            r.to_text()
        );
        assert_eq!(r.per_identity.len(), 2);
    }

    /// See: issue 15. Dimension bombs are excluded from their header, naming the claimed size.
    #[test]
    fn dimension_bombs_are_excluded_from_the_header() {
        let png_bomb = crate::fixtures::png_claiming(65500, 65500);
        let (r, reasons) = check_files(
            &[
                ("a/bomb.jpg", crate::fixtures::jpeg_claiming(65500, 65500)),
                ("a/bomb.png", png_bomb),
                ("a/ok.png", png_bytes(rgb(8, 8))),
            ],
            Expectation {
                crop: 8,
                ..Expectation::default()
            },
        );
        let expected =
            "the header claims 65500x65500 pixels, more than the limit of 16384 px a side and 64 megapixels";
        assert_eq!(reasons["a/bomb.jpg"], expected);
        assert_eq!(reasons["a/bomb.png"], expected);
        assert_eq!((r.excluded, r.usable), (2, 1));
        assert_eq!(r.excluded_paths(), ["a/bomb.jpg", "a/bomb.png"]);
    }

    #[test]
    fn a_cancelled_check_returns_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/x.png"), png_bytes(rgb(2, 2))).unwrap();
        let set = FileSet::from_identity_folders(&crate::IdentityFolders::open(d.path()).unwrap());
        let flag = AtomicBool::new(true);
        assert!(check_cancellable(&set, &Expectation::default(), &flag).is_none());
        flag.store(false, Ordering::Relaxed);
        let r = check_cancellable(&set, &Expectation::default(), &flag).unwrap();
        assert_eq!(r.total, 1);
    }
}
