//! Colour models the batch loader and align-check meet in real downloads, against pixels
//! decoded by Pillow (fixtures and expected values written by `fixtures/colour/make_fixtures.py`):
//! a CMYK JPEG and a palette PNG are accepted with the right RGB, never silently excluded.
//! The layouts vaepipe's own encoder can write (16-bit, grey, grey+alpha) are tested beside
//! the decoder in `src/decode.rs`. See: issue 15.

#![allow(clippy::unwrap_used)] // a panic in a test is a test failure

use std::path::PathBuf;

use vaepipe_facedata::{open_image, DecodeLimits};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/colour")
        .join(name)
}

/// Decodes `name` and compares the quadrant centres with Pillow's RGB, within `tolerance`.
fn check(name: &str, tolerance: u8) {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let decoded = open_image(&fixture(name), &DecodeLimits::DEFAULT)
        .unwrap_or_else(|e| panic!("{name} must decode: {e}"));
    assert_eq!(decoded.rgb.dimensions(), (16, 16));
    for p in expected[name]["pixels"].as_array().unwrap() {
        let (x, y) = (
            p["x"].as_u64().unwrap() as u32,
            p["y"].as_u64().unwrap() as u32,
        );
        let want: Vec<u8> = p["rgb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let got = decoded.rgb.get_pixel(x, y).0;
        for c in 0..3 {
            assert!(
                got[c].abs_diff(want[c]) <= tolerance,
                "{name} at ({x}, {y}): got {got:?}, Pillow says {want:?}"
            );
        }
    }
}

#[test]
fn cmyk_jpeg_decodes_to_pillows_rgb() {
    check("cmyk.jpg", 4);
}

#[test]
fn palette_png_decodes_to_its_palette_colours() {
    check("palette.png", 0);
}

#[test]
fn one_channel_grey_jpeg_is_replicated_to_rgb() {
    check("grey.jpg", 2);
}
