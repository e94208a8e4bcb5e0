//! Hostile inputs for tests and benchmarks, made in code so no binary bomb is committed:
//! PNGs and JPEGs whose header claims a size the file does not hold (a 65500×65500 "dimension
//! bomb" in a few hundred bytes). Nothing in the pipeline uses this module. See: issue 15.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbImage};

/// A valid 8×8 PNG whose IHDR claims `width`×`height` (its CRC fixed, so decoders believe it).
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = encode(ImageFormat::Png);
    // Signature (8), IHDR length (4) and type (4), then width and height.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A baseline 8×8 JPEG whose SOF0 claims `width`×`height` (at most 65535, JPEG's own limit).
pub fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = encode(ImageFormat::Jpeg);
    if let Some(sof) = bytes.windows(2).position(|m| m == [0xFF, 0xC0]) {
        // FF C0, length (2), precision (1), height (2), width (2).
        bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    }
    bytes
}

fn encode(format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 90]));
    let mut out = Cursor::new(Vec::new());
    // Encoding 8×8 RGB into memory cannot fail; an empty result would only make tests fail.
    let _ = DynamicImage::ImageRgb8(img).write_to(&mut out, format);
    out.into_inner()
}

/// PNG's CRC-32 (ISO-HDLC), bitwise: a few hundred bytes, no table needed.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
