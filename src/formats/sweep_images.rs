//! The images a sweep adds to its report, built from `sweep.json` by the engine's sweep hook:
//! a contact sheet of every variant's add-attribute grid labelled with its swept values, and
//! every variant's total-loss curve on one plot. The engine never decodes images, so these
//! live here.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use vaepipe_engine::report::SweepSummary;

use crate::formats::logs_h5::LossHistory;
use crate::formats::plot;

const LABEL_HEIGHT: u32 = 28;
const SHEET_WIDTH: u32 = 900;

/// Builds `contact_sheet.png` and `loss_curves.png` in `dir`; returns (caption, path) of each
/// image made (a sweep without render or train stages makes fewer).
pub fn build(summary: &SweepSummary, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut made = Vec::new();
    let label = |values: &std::collections::BTreeMap<String, serde_json::Value>| {
        values
            .iter()
            .map(|(k, v)| format!("{}={}", k.rsplit('.').next().unwrap_or(k), compact(v)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut grids = Vec::new();
    let mut curves = Vec::new();
    for variant in &summary.variants {
        for stage in &variant.stages {
            match stage.kind.as_str() {
                "render-attribute" => {
                    if let Some(png) = first_png(&stage.dir, "add_") {
                        grids.push((label(&variant.values), png));
                    }
                }
                "train-vae" => {
                    if let Ok(history) = LossHistory::read_h5(&stage.dir.join("logs.h5")) {
                        curves.push((label(&variant.values), history.total_loss));
                    }
                }
                _ => {}
            }
        }
    }
    if !grids.is_empty() {
        let path = dir.join("contact_sheet.png");
        contact_sheet(&grids, &path)?;
        made.push(("every variant's add-attribute grid".to_owned(), path));
    }
    if !curves.is_empty() {
        let path = dir.join("loss_curves.png");
        let series: Vec<(&str, &Vec<f64>)> = curves.iter().map(|(l, v)| (l.as_str(), v)).collect();
        plot::overlaid_curves("total loss per step", &series, &path)?;
        made.push(("total loss of every variant".to_owned(), path));
    }
    Ok(made)
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(compact).collect::<Vec<_>>().join("+"),
        other => other.to_string(),
    }
}

fn first_png(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".png"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Each grid scaled to the sheet's width, under a label line, stacked vertically.
fn contact_sheet(grids: &[(String, PathBuf)], path: &Path) -> Result<()> {
    let mut tiles = Vec::new();
    for (label, png) in grids {
        let img = image::open(png)
            .with_context(|| format!("failed to read {}", png.display()))?
            .to_rgb8();
        let h = (img.height() as u64 * SHEET_WIDTH as u64 / img.width().max(1) as u64) as u32;
        tiles.push((
            label,
            image::imageops::resize(
                &img,
                SHEET_WIDTH,
                h.max(1),
                image::imageops::FilterType::Triangle,
            ),
        ));
    }
    let height: u32 = tiles.iter().map(|(_, t)| t.height() + LABEL_HEIGHT).sum();
    let mut sheet = image::RgbImage::from_pixel(SHEET_WIDTH, height, image::Rgb([255, 255, 255]));
    let mut y = 0;
    let mut label_rows = Vec::new();
    for (label, tile) in &tiles {
        label_rows.push((label.to_string(), y));
        image::imageops::replace(&mut sheet, tile, 0, (y + LABEL_HEIGHT) as i64);
        y += tile.height() + LABEL_HEIGHT;
    }
    if plot::font_available() {
        let (w, h) = sheet.dimensions();
        let mut raw = sheet.into_raw();
        {
            let root = BitMapBackend::with_buffer(&mut raw, (w, h)).into_drawing_area();
            for (label, y) in &label_rows {
                root.draw(&Text::new(
                    label.clone(),
                    (6, *y as i32 + 5),
                    ("sans-serif", 18).into_font().color(&BLACK),
                ))
                .map_err(|e| anyhow!("contact sheet: {e}"))?;
            }
            root.present().map_err(|e| anyhow!("contact sheet: {e}"))?;
        }
        sheet = image::RgbImage::from_raw(w, h, raw)
            .ok_or_else(|| anyhow!("contact sheet: buffer size"))?;
    }
    sheet
        .save(path)
        .with_context(|| format!("failed to write {}", path.display()))
}
