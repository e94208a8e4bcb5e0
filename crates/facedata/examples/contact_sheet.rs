//! Renders contact sheets of synthetic faces for looking at them: `cargo run -p vaepipe-facedata
//! --example contact_sheet -- OUT_DIR [SEED]` writes `full.png` (CelebA-size images), `casia.png`
//! (182×182 aligned) and `crop64.png` (each face as the VAE sees it: 160 centre crop, TF1 legacy
//! bilinear to 64×64; left half not smiling, right half the same people smiling).

use vaepipe_facedata::face::{self, Canvas};
use vaepipe_facedata::imageops::{crop_or_pad, resize_bilinear, Layout, Sampling};
use vaepipe_facedata::synth::{casia_face, celeba_face};
use vaepipe_facedata::SynthParams;

fn sheet(tiles: &[image::RgbImage], cols: u32) -> image::RgbImage {
    let (w, h) = tiles[0].dimensions();
    let rows = (tiles.len() as u32).div_ceil(cols);
    let mut out = image::RgbImage::new(cols * (w + 2), rows * (h + 2));
    for (i, t) in tiles.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        image::imageops::replace(&mut out, t, (c * (w + 2)) as i64, (r * (h + 2)) as i64);
    }
    out
}

fn crop64(img: &image::RgbImage) -> image::RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let c = crop_or_pad(img.as_raw(), h, w, 3, 160, 160);
    let f: Vec<f32> = c.iter().map(|v| *v as f32).collect();
    let r = resize_bilinear(&f, Layout::Hwc, 160, 160, 3, 64, 64, Sampling::TfLegacy);
    let bytes: Vec<u8> = r
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    image::RgbImage::from_raw(64, 64, bytes).unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().ok_or("usage: contact_sheet OUT_DIR [SEED]")?);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    std::fs::create_dir_all(&out)?;
    let p = SynthParams::default();
    let full: Vec<_> = (0..24)
        .map(|i| {
            let (_, t, l) = celeba_face(&p, seed, i);
            face::render(&t, &l, Canvas::CelebA)
        })
        .collect();
    sheet(&full, 8).save(out.join("full.png"))?;
    let casia: Vec<_> = (0..16)
        .map(|i| {
            let (t, l) = casia_face(seed, i / 4, i % 4, 4);
            face::render(&t, &l, Canvas::Aligned182)
        })
        .collect();
    sheet(&casia, 8).save(out.join("casia.png"))?;
    let mut crops = Vec::new();
    for i in 0..16 {
        let (_, t, mut l) = celeba_face(&p, seed, i);
        l.smile = 0.0;
        l.mouth_gap = 0.0;
        crops.push(crop64(&face::render(&t, &l, Canvas::CelebA)));
        l.smile = 0.4 + 0.6 * (i % 4) as f32 / 3.0;
        l.mouth_gap = if l.smile > 0.5 {
            3.0 + 7.0 * (l.smile - 0.5)
        } else {
            0.0
        };
        crops.push(crop64(&face::render(&t, &l, Canvas::CelebA)));
    }
    sheet(&crops, 8).save(out.join("crop64.png"))?;
    let big = image::imageops::resize(
        &sheet(&crops, 8),
        8 * 66 * 2,
        4 * 66 * 2,
        image::imageops::FilterType::Nearest,
    );
    big.save(out.join("crop64_x2.png"))?;
    Ok(())
}
