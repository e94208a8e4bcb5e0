//! The one way vaepipe turns image bytes into RGB pixels, shared by every decoder entry point
//! (`align-check`, the batch loader behind `train-vae`/`encode`, `modify`, `align`).
//!
//! The header is read first and an image whose claimed size is above [`DecodeLimits`] is
//! refused before a pixel buffer exists, naming the claimed size: a 40-byte JPEG that claims
//! 65500×65500 pixels costs a header parse, not 12 GB (see issue 15). The limits are also handed
//! to the `image` crate as its own [`image::Limits`] (max width/height, max allocation), so a
//! decoder that allocates more than the header promised is stopped by the library too.
//!
//! Colour follows TF's `decode_image(channels=3)`: greyscale is replicated, alpha is dropped (not
//! composited), palette images are expanded, CMYK JPEGs are converted to RGB, and 16-bit samples
//! are scaled to 8 bits as round(v / 257) (the `image` crate's conversion). Nothing is silently
//! refused: what cannot be decoded is a [`DecodeError`] saying why. Decoder panics are caught.
//! Dataset-level policy (which problems exclude a file) is `align_check.rs`'s business.

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use image::{ExtendedColorType, ImageDecoder, ImageFormat, RgbImage};

use crate::error::{Error, Result};

/// The largest image a decoder entry point accepts, checked against the header before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeLimits {
    /// Longest accepted side in pixels.
    pub max_side: u32,
    /// Most accepted pixels (width × height).
    pub max_pixels: u64,
}

impl DecodeLimits {
    /// 16384 px a side and 64 megapixels: far above any face crop, far below a bomb.
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_side: 16384,
        max_pixels: 64_000_000,
    };

    /// Whether an image of `width` × `height` is within the limits.
    pub fn allows(&self, width: u32, height: u32) -> bool {
        width <= self.max_side
            && height <= self.max_side
            && u64::from(width) * u64::from(height) <= self.max_pixels
    }

    /// The same limits in the `image` crate's terms. The allocation cap leaves room for the
    /// widest layout a PNG or JPEG decodes to (RGBA, 16 bits a sample: 8 bytes a pixel).
    fn for_image_crate(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_pixels.saturating_mul(8).max(1 << 20));
        limits
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::DEFAULT
    }
}

impl std::fmt::Display for DecodeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} px a side and {} megapixels",
            self.max_side,
            format_megapixels(self.max_pixels)
        )
    }
}

fn format_megapixels(pixels: u64) -> String {
    let mp = pixels as f64 / 1e6;
    if mp >= 10.0 {
        format!("{mp:.0}")
    } else {
        format!("{mp:.2}")
    }
}

/// A decoded image: its pixels as RGB8 and what the file held before conversion.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub rgb: RgbImage,
    /// The file's own colour layout (`L16`, `Cmyk8`, `La8`, …).
    pub original: ExtendedColorType,
    pub format: ImageFormat,
}

/// Why bytes did not become pixels.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are no format vaepipe reads (PNG, JPEG).
    #[error("not a PNG or JPEG image")]
    NotAnImage,
    /// The header claims more pixels than the limits allow; nothing was decoded.
    #[error("the header claims {width}x{height} pixels, more than the limit of {limits}")]
    TooLarge {
        width: u32,
        height: u32,
        limits: DecodeLimits,
    },
    /// A colour layout the pipeline cannot turn into RGB (a float image, an unknown layout).
    #[error("unsupported colour layout {0}")]
    UnsupportedColor(String),
    /// The data ends before the image does.
    #[error("truncated: {0}")]
    Truncated(String),
    /// The decoder rejected the data (or panicked on it).
    #[error("cannot decode: {0}")]
    Corrupt(String),
}

/// Decodes `bytes` (format guessed from the content, like TF) to RGB8 within `limits`.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    let format = image::guess_format(bytes).map_err(|_| DecodeError::NotAnImage)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(DecodeError::Corrupt(format!(
            "{format:?} images are not read (PNG and JPEG are); convert it"
        )));
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| decode_as(bytes, format, limits))) {
        Ok(result) => result,
        Err(_) => Err(DecodeError::Corrupt("the image decoder panicked".into())),
    }
}

/// Reads and decodes one file; errors name the file and say what was wrong.
pub fn open_image(path: &Path, limits: &DecodeLimits) -> Result<Decoded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::image(path, "the file is empty (zero bytes)"));
    }
    decode_image(&bytes, limits).map_err(|e| Error::image(path, e.to_string()))
}

fn decode_as(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<Decoded, DecodeError> {
    // The header alone: dimensions and colour layout, with no pixel buffer yet.
    let reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    if !limits.allows(width, height) {
        return Err(DecodeError::TooLarge {
            width,
            height,
            limits: *limits,
        });
    }
    let original = decoder.original_color_type();
    if let Some(layout) = unsupported(original) {
        return Err(DecodeError::UnsupportedColor(layout));
    }
    decoder
        .set_limits(limits.for_image_crate())
        .map_err(classify)?;
    let image = image::DynamicImage::from_decoder(decoder).map_err(classify)?;
    Ok(Decoded {
        rgb: image.into_rgb8(),
        original,
        format,
    })
}

/// Layouts with no meaning as a photo's RGB (PNG and JPEG produce none of them today; the
/// check keeps a future decoder feature from being silently misread).
fn unsupported(c: ExtendedColorType) -> Option<String> {
    use ExtendedColorType as E;
    match c {
        E::Rgb32F | E::Rgba32F => Some(format!("{c:?} (floating point samples)")),
        E::Unknown(bits) => Some(format!("unknown ({bits} bits a pixel)")),
        _ => None,
    }
}

fn classify(e: image::ImageError) -> DecodeError {
    let detail = e.to_string();
    let lower = detail.to_lowercase();
    let eof = matches!(&e, image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
    if eof || lower.contains("eof") || lower.contains("end of") {
        DecodeError::Truncated(detail)
    } else {
        DecodeError::Corrupt(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb};

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(img: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn sixteen_bit_rgb_is_scaled_to_eight_bits() {
        let values = [0u16, 128, 129, 257, 30000, 65535];
        let img = ImageBuffer::from_fn(6, 1, |x, _| {
            let v = values[x as usize];
            Rgb([v, 65535 - v, v / 2])
        });
        let d = decode_image(&png(DynamicImage::ImageRgb16(img)), &DecodeLimits::DEFAULT).unwrap();
        assert_eq!(d.original, ExtendedColorType::Rgb16);
        let scale = |v: u16| ((u32::from(v) + 128) / 257) as u8;
        for (x, &v) in values.iter().enumerate() {
            assert_eq!(
                d.rgb.get_pixel(x as u32, 0).0,
                [scale(v), scale(65535 - v), scale(v / 2)],
                "value {v}"
            );
        }
    }

    #[test]
    fn sixteen_bit_grey_and_grey_alpha_are_replicated() {
        let grey16 = ImageBuffer::from_fn(2, 1, |x, _| Luma([[1000u16, 51400][x as usize]]));
        let d = decode_image(
            &png(DynamicImage::ImageLuma16(grey16)),
            &DecodeLimits::DEFAULT,
        )
        .unwrap();
        assert_eq!(d.rgb.get_pixel(0, 0).0, [4, 4, 4]);
        assert_eq!(d.rgb.get_pixel(1, 0).0, [200, 200, 200]);

        let ga = ImageBuffer::from_fn(2, 1, |x, _| LumaA([[17u8, 230][x as usize], 0]));
        let d = decode_image(&png(DynamicImage::ImageLumaA8(ga)), &DecodeLimits::DEFAULT).unwrap();
        assert_eq!(d.original, ExtendedColorType::La8);
        assert_eq!(
            d.rgb.get_pixel(0, 0).0,
            [17, 17, 17],
            "alpha dropped, not composited"
        );
        assert_eq!(d.rgb.get_pixel(1, 0).0, [230, 230, 230]);
    }

    #[test]
    fn grey_jpeg_is_replicated() {
        let grey = ImageBuffer::from_pixel(16, 16, Luma([90u8]));
        let d = decode_image(
            &jpeg(DynamicImage::ImageLuma8(grey)),
            &DecodeLimits::DEFAULT,
        )
        .unwrap();
        let p = d.rgb.get_pixel(8, 8).0;
        assert!(
            p[0] == p[1] && p[1] == p[2] && p[0].abs_diff(90) <= 1,
            "{p:?}"
        );
    }

    #[test]
    fn a_header_above_the_limits_is_refused_naming_the_claimed_size() {
        let e = decode_image(
            &crate::fixtures::png_claiming(65500, 65500),
            &DecodeLimits::DEFAULT,
        )
        .unwrap_err();
        assert_eq!(
            e,
            DecodeError::TooLarge {
                width: 65500,
                height: 65500,
                limits: DecodeLimits::DEFAULT
            }
        );
        assert_eq!(
            e.to_string(),
            "the header claims 65500x65500 pixels, more than the limit of 16384 px a side and 64 megapixels"
        );
        // One side within the side limit, but too many pixels in all.
        let small = DecodeLimits {
            max_side: 100,
            max_pixels: 50,
        };
        let e = decode_image(&crate::fixtures::png_claiming(10, 6), &small).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::TooLarge {
                    width: 10,
                    height: 6,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn open_image_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.png");
        std::fs::write(&path, crate::fixtures::png_claiming(20000, 3)).unwrap();
        let e = open_image(&path, &DecodeLimits::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bomb.png") && e.contains("20000x3"), "{e}");
        std::fs::write(&path, b"").unwrap();
        let e = open_image(&path, &DecodeLimits::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bomb.png") && e.contains("zero bytes"), "{e}");
    }
}
