//! TensorBoard event files: scalars and PNG images written so that `tensorboard --logdir runs/`
//! shows vaepipe's training, read by TensorBoard's own reader (tested with the `tensorboard`
//! package from PyPI, see `scripts/tensorboard/venv.sh`).
//!
//! Hand-written because no maintained crate fits: `tensorboard-rs` has been unmaintained since
//! 2022 (protobuf 2) and names each file by its own clock, so a resume could not continue one. The
//! format is small: a TFRecord stream (`u64` length, masked CRC-32C of the length, the bytes,
//! masked CRC-32C of the bytes; the CRC is `vaepipe-tfckpt`'s) of `tensorflow.Event` protos,
//! the first carrying `file_version = "brain.Event:2"`, the others a `Summary` of one value,
//! either `simple_value` (a scalar) or an `Image` (the PNG bytes as they are on disk).
//!
//! A resumed stage reopens the file with [`EventWriter::resume`], which cuts it after the last
//! event of the checkpoint's step (and any torn record a kill left), so the continued file has
//! every step once.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use vaepipe_tfckpt::masked_crc32c;

/// One fixed name per directory: a resumed run appends to it instead of starting another
/// (TensorBoard reads any file whose name contains `tfevents`).
pub const EVENTS_FILE: &str = "events.out.tfevents.0.vaepipe";

const FILE_VERSION: &str = "brain.Event:2";

/// Appends events to a directory's [`EVENTS_FILE`].
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Opens `dir/EVENTS_FILE` for a run that has finished `done_steps` steps: events of later
    /// steps (written after the checkpoint being resumed from) and a torn last record are cut
    /// off; a missing or unreadable file starts afresh with the version record.
    pub fn resume(dir: &Path, done_steps: u64) -> io::Result<EventWriter> {
        let path = dir.join(EVENTS_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let keep = records(&bytes)
            .take_while(|r| r.step <= done_steps as i64)
            .last()
            .map_or(0, |r| r.end);
        file.set_len(keep as u64)?;
        file.seek(SeekFrom::End(0))?;
        let mut writer = EventWriter { path, file };
        if keep == 0 {
            let mut event = event_header(0);
            put_bytes(&mut event, 3, FILE_VERSION.as_bytes());
            writer.write_record(&event)?;
        }
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar under `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f32) -> io::Result<()> {
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_key(&mut v, 2, 5);
        v.extend_from_slice(&value.to_le_bytes());
        self.summary(step, &v)
    }

    /// A PNG (its encoded bytes) under `tag` at `step`; width and height come from its header.
    pub fn png(&mut self, tag: &str, step: u64, png: &[u8]) -> io::Result<()> {
        let (width, height) = png_size(png).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the image for `{tag}` is not a PNG"),
            )
        })?;
        let mut image = Vec::new();
        put_varint_field(&mut image, 1, u64::from(height));
        put_varint_field(&mut image, 2, u64::from(width));
        put_varint_field(&mut image, 3, 3); // colorspace: RGB
        put_bytes(&mut image, 4, png);
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_bytes(&mut v, 4, &image);
        self.summary(step, &v)
    }

    /// Reads `path` and writes it as [`EventWriter::png`].
    pub fn png_file(&mut self, tag: &str, step: u64, path: &Path) -> io::Result<()> {
        let bytes = std::fs::read(path)?;
        self.png(tag, step, &bytes)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn summary(&mut self, step: u64, value: &[u8]) -> io::Result<()> {
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, value);
        let mut event = event_header(step as i64);
        put_bytes(&mut event, 5, &summary);
        self.write_record(&event)
    }

    fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        record.extend_from_slice(data);
        record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.file.write_all(&record)
    }
}

/// `Event { wall_time = now, step }`, without its payload.
fn event_header(step: i64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut event = Vec::new();
    put_key(&mut event, 1, 1);
    event.extend_from_slice(&now.to_le_bytes());
    put_varint_field(&mut event, 2, step as u64);
    event
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&png[16..20]), be(&png[20..24])))
}

/// A record of an event file: its event's step and where the record ends.
struct RecordInfo {
    step: i64,
    end: usize,
}

/// The intact records at the start of `bytes`, stopping at the first torn or corrupt one.
fn records(bytes: &[u8]) -> impl Iterator<Item = RecordInfo> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(at..at + 12)?;
        if masked_crc32c(&header[..8]).to_le_bytes() != header[8..12] {
            return None;
        }
        let len = usize::try_from(u64::from_le_bytes(header[..8].try_into().ok()?)).ok()?;
        let data = bytes.get(at + 12..at.checked_add(12 + len)?)?;
        let crc = bytes.get(at + 12 + len..at + 16 + len)?;
        if masked_crc32c(data).to_le_bytes() != crc {
            return None;
        }
        at += 16 + len;
        Some(RecordInfo {
            step: event_step(data)?,
            end: at,
        })
    })
}

/// The `step` field (2) of an encoded `Event`; 0 when absent (the version record).
fn event_step(event: &[u8]) -> Option<i64> {
    let mut at = 0usize;
    let mut step = 0i64;
    while at < event.len() {
        let key = varint(event, &mut at)?;
        match key & 7 {
            0 => {
                let v = varint(event, &mut at)?;
                if key >> 3 == 2 {
                    step = v as i64;
                }
            }
            1 => at += 8,
            2 => at += usize::try_from(varint(event, &mut at)?).ok()?,
            5 => at += 4,
            _ => return None,
        }
    }
    (at == event.len()).then_some(step)
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The Python of a venv with the `tensorboard` package, for tests that read event files back
/// with TensorBoard's own reader: `VAEPIPE_TENSORBOARD_PYTHON`, else the venv
/// `scripts/tensorboard/venv.sh` makes. `None` (the caller skips, saying so) outside CI; under
/// CI (`CI` set) a missing venv is a panic, so the check cannot pass by skipping.
pub fn reader_python() -> Option<PathBuf> {
    let configured = std::env::var_os("VAEPIPE_TENSORBOARD_PYTHON").map(PathBuf::from);
    let cache = std::env::var_os("VAEPIPE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("vaepipe")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vaepipe")));
    let default = cache.map(|c| c.join("tensorboard-2.21.0/bin/python"));
    let found = configured.or(default).filter(|p| p.is_file());
    if found.is_none() {
        let message = "no TensorBoard venv: run scripts/tensorboard/venv.sh (or set VAEPIPE_TENSORBOARD_PYTHON)";
        assert!(
            std::env::var_os("CI").is_none(),
            "{message}; CI must have it"
        );
        eprintln!("SKIPPED: {message}");
    }
    found
}

/// Runs TensorBoard's `EventAccumulator` on `dir` and returns, as JSON, `{"scalars": {tag:
/// [[step, value], …]}, "images": {tag: [[step, width, height, png_bytes_len], …]}}`.
pub fn read_with_tensorboard(python: &Path, dir: &Path) -> anyhow::Result<serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
       "images": {t: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)]
                  for t in tags["images"]}}
print(json.dumps(out))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", SCRIPT])
        .arg(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "EventAccumulator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic in a test is a test failure
mod tests {
    use super::*;

    fn tiny_png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut bytes = Vec::new();
        img.write_to(&mut io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    fn steps(path: &Path) -> Vec<i64> {
        records(&std::fs::read(path).unwrap())
            .map(|r| r.step)
            .collect()
    }

    #[test]
    fn resume_cuts_later_steps_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::resume(dir.path(), 0).unwrap();
        for step in 1..=5 {
            w.scalar("loss", step, step as f32).unwrap();
        }
        drop(w);
        let path = dir.path().join(EVENTS_FILE);
        // A kill in the middle of a record leaves half of it.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 0, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        assert_eq!(steps(&path), [0, 1, 2, 3, 4, 5]);
        let mut w = EventWriter::resume(dir.path(), 3).unwrap();
        assert_eq!(
            steps(&path),
            [0, 1, 2, 3],
            "steps after the checkpoint are cut"
        );
        w.scalar("loss", 4, 4.5).unwrap();
        drop(w);
        assert_eq!(steps(&path), [0, 1, 2, 3, 4]);
        // A file of garbage starts afresh rather than failing.
        std::fs::write(&path, b"not an event file").unwrap();
        drop(EventWriter::resume(dir.path(), 3).unwrap());
        assert_eq!(steps(&path), [0]);
    }

    #[test]
    fn a_flipped_bit_ends_the_readable_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::resume(dir.path(), 0).unwrap();
        w.scalar("a", 1, 1.0).unwrap();
        w.scalar("a", 2, 2.0).unwrap();
        drop(w);
        let path = dir.path().join(EVENTS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1; // inside the last record's payload
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(steps(&path), [0, 1]);
    }

    #[test]
    fn png_size_reads_the_header_and_rejects_other_bytes() {
        assert_eq!(png_size(&tiny_png(5, 3)), Some((5, 3)));
        assert_eq!(png_size(b"GIF89a........................"), None);
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::resume(dir.path(), 0).unwrap();
        let err = w.png("x", 1, b"nope").unwrap_err();
        assert!(err.to_string().contains("`x` is not a PNG"), "{err}");
    }

    /// TensorBoard's own reader finds every scalar and image with its step and value.
    #[test]
    fn tensorboard_reads_back_every_scalar_and_image() {
        let Some(python) = reader_python() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::resume(dir.path(), 0).unwrap();
        for step in 1..=4u64 {
            w.scalar("loss/total", step, 1.5 / step as f32).unwrap();
            w.scalar("learning_rate", step, 0.25).unwrap();
        }
        let png = tiny_png(6, 4);
        w.png("reconstruction", 2, &png).unwrap();
        w.png("reconstruction", 4, &png).unwrap();
        drop(w);
        let got = read_with_tensorboard(&python, dir.path()).unwrap();
        let total: Vec<(u64, f64)> = got["scalars"]["loss/total"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap()))
            .collect();
        assert_eq!(total.len(), 4, "{got}");
        for (i, (step, value)) in total.iter().enumerate() {
            assert_eq!(*step, i as u64 + 1);
            assert_eq!(*value as f32, 1.5 / *step as f32);
        }
        assert_eq!(got["scalars"]["learning_rate"].as_array().unwrap().len(), 4);
        assert_eq!(
            got["images"]["reconstruction"],
            serde_json::json!([[2, 6, 4, png.len()], [4, 6, 4, png.len()]])
        );
    }
}
