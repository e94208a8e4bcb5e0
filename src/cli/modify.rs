//! `vaepipe modify`: facenet's modify_attribute.py for any image file. Each image is cropped
//! or padded to the model's crop (as in training), encoded (inference-mode BN, the mean),
//! moved along an attribute vector by each requested amount, decoded and written as a PNG —
//! one image per amount, or a strip when several amounts are given. A bad image is reported
//! and skipped; the others are still processed, and the exit code says something failed.
//!
//! Outputs are named `<stem>_<attribute>.png`; when two inputs share a stem, their paths
//! relative to a common folder keep them apart (`a/001_smiling.png`, `b/001_smiling.png`), then
//! their extensions, then a counter. An existing output is never replaced without `--force`,
//! and that is checked before any work starts (see issue 15).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use crate::formats::attribute_vectors_h5::AttributeVectors;
use crate::formats::image_grid::{put_images_on_grid, GridScaling};
use crate::formats::vae_spec::VaeSpec;
use crate::models;
use crate::models::preprocess::to_nhwc_vec;

#[derive(clap::Args)]
pub struct ModifyArgs {
    /// Image files to modify (any size; cropped or padded to the model's crop)
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// A run directory (`runs/<experiment>`) holding a train-vae and an attribute-vectors stage
    #[arg(long, conflicts_with_all = ["model", "vectors"])]
    run: Option<PathBuf>,
    /// A train-vae artifact directory (with vae.json and vae.safetensors)
    #[arg(long, requires = "vectors")]
    model: Option<PathBuf>,
    /// An attribute_vectors.h5 (vaepipe's or facenet's), or the directory holding it
    #[arg(long, requires = "model")]
    vectors: Option<PathBuf>,
    /// The CelebA attribute to add (a negative amount subtracts it)
    #[arg(long, default_value = "Smiling")]
    attribute: String,
    /// Amounts of the vector to add; several give a strip per image
    #[arg(long = "amount", default_values_t = [0.0, 1.5, 3.0], allow_hyphen_values = true, value_delimiter = ',')]
    amounts: Vec<f64>,
    /// Output directory (created)
    #[arg(short, long, default_value = "modified")]
    output: PathBuf,
    /// `auto`, `cpu`, `cuda`, `cuda:N`
    #[arg(long, default_value = "auto")]
    device: String,
    /// Replace output files that already exist (otherwise vaepipe refuses, before any work)
    #[arg(long)]
    force: bool,
    /// How the PNGs become bytes: `clip` (true colours) or `minmax` (facenet's bytescale)
    #[arg(long, value_enum, default_value = "clip")]
    grid_scaling: GridScaling,
}

pub fn run(args: ModifyArgs) -> Result<ExitCode> {
    let device = super::select_device(&args.device)?;
    let outputs: Vec<PathBuf> = output_names(&args.images, &args.attribute)
        .into_iter()
        .map(|name| args.output.join(name))
        .collect();
    refuse_to_overwrite(&outputs, args.force)?;
    let (model_dir, vectors_path) = locate(&args)?;
    let (spec, _vs, vae) = VaeSpec::load(&model_dir, device)?;
    let vectors = AttributeVectors::read(&vectors_path)?;
    let Some(vector) = vectors.vector(&args.attribute) else {
        let fields = vectors.fields.iter().map(String::as_str);
        let help = match vaepipe_engine::config::error::did_you_mean(&args.attribute, fields) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("it has: {}", vectors.fields.join(", ")),
        };
        return Err(super::usage(format!(
            "{} has no attribute `{}`\n  help: {help}",
            vectors_path.display(),
            args.attribute,
        )));
    };
    if vectors.latent_size != spec.latent_size {
        bail!(
            "the vectors have latent size {} but the model has {}",
            vectors.latent_size,
            spec.latent_size
        );
    }
    let vector = Tensor::from_slice(vector).to_device(device).view([1, -1]);
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("failed to create {}", args.output.display()))?;
    let mut failed = 0;
    for (path, out) in args.images.iter().zip(&outputs) {
        match modify_one(path, out, &args, &spec, &vae, &vector, device) {
            Ok(out) => println!("{} → {}", path.display(), out.display()),
            Err(err) => {
                failed += 1;
                eprintln!("error: {}: {err:#}", path.display());
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images failed", args.images.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds the model directory and the vectors file from `--run` or the explicit flags.
fn locate(args: &ModifyArgs) -> Result<(PathBuf, PathBuf)> {
    let vectors_file = |p: &Path| {
        if p.is_dir() {
            p.join("attribute_vectors.h5")
        } else {
            p.to_path_buf()
        }
    };
    if let (Some(model), Some(vectors)) = (&args.model, &args.vectors) {
        return Ok((model.clone(), vectors_file(vectors)));
    }
    let Some(run) = &args.run else {
        return Err(super::usage(
            "say which model to use: `--run runs/<experiment>`, or `--model DIR --vectors FILE`",
        ));
    };
    let mut model = None;
    let mut vectors = None;
    let entries = std::fs::read_dir(run).map_err(|e| {
        super::usage(format!(
            "--run {}: cannot read the run directory ({e})",
            run.display()
        ))
    })?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for dir in dirs {
        if model.is_none() && dir.join(VaeSpec::SPEC).is_file() {
            model = Some(dir.clone());
        }
        if vectors.is_none() && dir.join("attribute_vectors.h5").is_file() {
            vectors = Some(dir.join("attribute_vectors.h5"));
        }
    }
    match (model, vectors) {
        (Some(m), Some(v)) => Ok((m, v)),
        _ => Err(super::usage(format!(
            "{} holds no finished train-vae and attribute-vectors stages; run the experiment first, or pass `--model` and `--vectors`",
            run.display()
        ))),
    }
}

fn modify_one(
    path: &Path,
    out: &Path,
    args: &ModifyArgs,
    spec: &VaeSpec,
    vae: &models::Vae,
    vector: &Tensor,
    device: Device,
) -> Result<PathBuf> {
    let limits = vaepipe_facedata::DecodeLimits::DEFAULT;
    let image = match vaepipe_facedata::open_image(path, &limits) {
        Ok(decoded) => decoded.rgb,
        // The caller names the file already.
        Err(vaepipe_facedata::Error::Image { message, .. }) => bail!("{message}"),
        Err(e) => return Err(e.into()),
    };
    let crop = spec.input_image_size;
    let (w, h) = (image.width() as usize, image.height() as usize);
    let cropped = vaepipe_facedata::crop_or_pad(image.as_raw(), h, w, 3, crop, crop);
    let pixels: Vec<f32> = cropped.iter().map(|&b| b as f32).collect();
    let x = Tensor::from_slice(&pixels)
        .view([1, crop as i64, crop as i64, 3])
        .permute([0, 3, 1, 2])
        .to_device(device);
    let x = spec.normalization.from_pixels(&x);
    let size = spec.model.image_size();
    let x = models::resize::resize(&x, size, size, spec.resize.sampling());
    let decoded = tch::no_grad(|| {
        let (mean, _) = vae.encode(&x, false);
        let amounts =
            Tensor::from_slice(&args.amounts.iter().map(|&a| a as f32).collect::<Vec<_>>())
                .to_device(device)
                .view([-1, 1]);
        let z = mean + amounts * vector; // [A, L]
        vae.decode(&z, false)
    });
    let pixels = spec.normalization.to_pixels(&decoded).to_kind(Kind::Float);
    let s = size as usize;
    let canvas = put_images_on_grid(&to_nhwc_vec(&pixels)?, s, args.amounts.len(), 1)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    canvas.save_png(out, args.grid_scaling)?;
    Ok(out.to_path_buf())
}

/// Refuses (exit 2) when an output exists and `--force` was not given, naming the files.
fn refuse_to_overwrite(outputs: &[PathBuf], force: bool) -> Result<()> {
    let existing: Vec<&PathBuf> = outputs.iter().filter(|p| p.exists()).collect();
    if force || existing.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> = existing
        .iter()
        .take(5)
        .map(|p| format!("  {}", p.display()))
        .collect();
    if existing.len() > 5 {
        names.push(format!("  … and {} more", existing.len() - 5));
    }
    Err(super::usage(format!(
        "refusing to overwrite {} existing output file{}:\n{}\n  help: pass `--force` to replace them, or choose another `-o`",
        existing.len(),
        if existing.len() == 1 { "" } else { "s" },
        names.join("\n")
    )))
}

/// One output name per input, unique within the call: `<stem>_<attribute>.png`, and for inputs
/// whose names would collide, first their folders relative to the colliding inputs' common
/// folder, then their extensions, then a counter.
pub fn output_names(images: &[PathBuf], attribute: &str) -> Vec<PathBuf> {
    let suffix = attribute.to_lowercase();
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    };
    let mut names: Vec<PathBuf> = images.iter().map(|p| PathBuf::from(stem(p))).collect();
    for level in 1..=3 {
        let groups = collisions(&names);
        if groups.is_empty() {
            break;
        }
        for group in groups {
            let parents: Vec<PathBuf> = group
                .iter()
                .map(|&i| {
                    let abs = std::path::absolute(&images[i]).unwrap_or_else(|_| images[i].clone());
                    abs.parent().map(Path::to_path_buf).unwrap_or_default()
                })
                .collect();
            let common = common_ancestor(&parents);
            for (k, &i) in group.iter().enumerate() {
                let relative = parents[k].strip_prefix(&common).unwrap_or(Path::new(""));
                let ext = images[i]
                    .extension()
                    .map(|e| format!("_{}", e.to_string_lossy()))
                    .unwrap_or_default();
                names[i] = match level {
                    1 => relative.join(stem(&images[i])),
                    2 => relative.join(format!("{}{ext}", stem(&images[i]))),
                    _ if k == 0 => names[i].clone(),
                    _ => PathBuf::from(format!("{}-{}", names[i].display(), k + 1)),
                };
            }
        }
    }
    names
        .into_iter()
        .map(|n| PathBuf::from(format!("{}_{suffix}.png", n.display())))
        .collect()
}

/// Indices of names that occur more than once, grouped by name, in input order.
fn collisions(names: &[PathBuf]) -> Vec<Vec<usize>> {
    let mut by_name: std::collections::BTreeMap<&PathBuf, Vec<usize>> = Default::default();
    for (i, n) in names.iter().enumerate() {
        by_name.entry(n).or_default().push(i);
    }
    by_name.into_values().filter(|g| g.len() > 1).collect()
}

fn common_ancestor(paths: &[PathBuf]) -> PathBuf {
    let mut common: Vec<std::path::Component<'_>> = match paths.first() {
        Some(p) => p.components().collect(),
        None => return PathBuf::new(),
    };
    for p in &paths[1..] {
        let shared = common
            .iter()
            .zip(p.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(shared);
    }
    common.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(inputs: &[&str]) -> Vec<String> {
        let inputs: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
        output_names(&inputs, "Smiling")
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }

    /// See: issue 15 (`a/001.jpg b/001.png` both went to `out/001_smiling.png`).
    #[test]
    fn colliding_stems_keep_their_folders_then_extensions_then_a_counter() {
        assert_eq!(
            names(&["x/001.jpg", "y/002.png"]),
            ["001_smiling.png", "002_smiling.png"]
        );
        assert_eq!(
            names(&["a/001.jpg", "b/001.png", "c/7.jpg"]),
            ["a/001_smiling.png", "b/001_smiling.png", "7_smiling.png"]
        );
        assert_eq!(
            names(&["d/a/001.jpg", "d/a/001.png"]),
            ["001_jpg_smiling.png", "001_png_smiling.png"]
        );
        assert_eq!(
            names(&["q/5.jpg", "q/5.jpg", "q/5.jpg"]),
            [
                "5_jpg_smiling.png",
                "5_jpg-2_smiling.png",
                "5_jpg-3_smiling.png"
            ]
        );
    }
}
