//! Loss-curve PNGs with plotters. Text needs a font: plotters' `ab_glyph` backend is fed the
//! system's DejaVu Sans (Debian's fonts-dejavu-core) when present; without it the curves are
//! still drawn, only unlabelled, so a missing font never fails a training run.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a font once per process; false when none is found.
pub fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        for path in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// One panel per named series, stacked vertically; x is the step (1-based).
pub fn loss_curves(series: &[(&str, &Vec<f64>)], path: &Path) -> Result<()> {
    let labelled = font_available();
    let height = 220 * series.len().max(1) as u32;
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let panels = root.split_evenly((series.len().max(1), 1));
    for (i, ((name, values), panel)) in series.iter().zip(panels.iter()).enumerate() {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let (lo, hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (lo.min(0.0), lo.max(0.0) + 1.0)
        };
        let steps = values.len().max(2) as f64;
        let mut builder = ChartBuilder::on(panel);
        builder.margin(10);
        if labelled {
            builder
                .caption(*name, ("sans-serif", 18))
                .x_label_area_size(30)
                .y_label_area_size(70);
        }
        let mut chart = builder
            .build_cartesian_2d(1f64..steps, lo..hi)
            .map_err(|e| anyhow!("plot: {e}"))?;
        if labelled {
            chart
                .configure_mesh()
                .x_desc("step")
                .draw()
                .map_err(|e| anyhow!("plot: {e}"))?;
        }
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(s, &v)| ((s + 1) as f64, v)),
                &colour,
            ))
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    root.present()
        .map_err(|e| anyhow!("failed to write {}: {e}", path.display()))?;
    Ok(())
}

/// Several named series on one chart, with a legend (a sweep's variants).
pub fn overlaid_curves(title: &str, series: &[(&str, &Vec<f64>)], path: &Path) -> Result<()> {
    let labelled = font_available();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let finite = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied().filter(|x| x.is_finite()));
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let steps = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(2)
        .max(2) as f64;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(10);
    if labelled {
        builder
            .caption(title, ("sans-serif", 20))
            .x_label_area_size(30)
            .y_label_area_size(80);
    }
    let mut chart = builder
        .build_cartesian_2d(1f64..steps, lo..hi)
        .map_err(|e| anyhow!("plot: {e}"))?;
    if labelled {
        chart
            .configure_mesh()
            .x_desc("step")
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    for (i, (name, values)) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let drawn = chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(s, &v)| ((s + 1) as f64, v)),
                colour,
            ))
            .map_err(|e| anyhow!("plot: {e}"))?;
        if labelled {
            drawn
                .label(name.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    root.present()
        .map_err(|e| anyhow!("failed to write {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series_as_a_panel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let a = vec![5.0, 4.0, 3.5, 3.0];
        let b = vec![1.0, 1.5, f64::NAN, 2.0];
        loss_curves(&[("total", &a), ("KL", &b)], &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 440));
        // Something other than the white background was drawn in each panel.
        for (y0, y1) in [(0, 220), (220, 440)] {
            let inked =
                (y0..y1).any(|y| (0..900).any(|x| img.get_pixel(x, y).0 != [255, 255, 255]));
            assert!(inked, "panel {y0}..{y1} is blank");
        }
    }
}
