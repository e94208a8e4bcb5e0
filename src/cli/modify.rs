//! `vaepipe modify`: facenet's modify_attribute.py for any image file. Each image is cropped
//! or padded to the model's crop (as in training), encoded (inference-mode BN, the mean),
//! moved along an attribute vector by each requested amount, decoded and written as a PNG —
//! one image per amount, or a strip when several amounts are given. A bad image is reported
//! and skipped; the others are still processed, and the exit code says something failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use crate::formats::attribute_vectors_h5::AttributeVectors;
use crate::formats::image_grid::{put_images_on_grid, GridScaling};
use crate::models;
use crate::stages::common;
use crate::stages::train_vae::VaeSpec;

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
    /// How the PNGs become bytes: `clip` (true colours) or `minmax` (facenet's bytescale)
    #[arg(long, value_enum, default_value = "clip")]
    grid_scaling: GridScaling,
}

pub fn run(args: ModifyArgs) -> Result<ExitCode> {
    let device = crate::device::select(&args.device, crate::device::Available::probe())?;
    let (model_dir, vectors_path) = locate(&args)?;
    let (spec, _vs, vae) = VaeSpec::load(&model_dir, device)?;
    let vectors = AttributeVectors::read(&vectors_path)?;
    let Some(vector) = vectors.vector(&args.attribute) else {
        bail!(
            "{} has no attribute `{}`; it has: {}",
            vectors_path.display(),
            args.attribute,
            vectors.fields.join(", ")
        );
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
    for path in &args.images {
        match modify_one(path, &args, &spec, &vae, &vector, device) {
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
        bail!("say which model to use: `--run runs/<experiment>`, or `--model DIR --vectors FILE`")
    };
    let mut model = None;
    let mut vectors = None;
    let entries = std::fs::read_dir(run)
        .with_context(|| format!("failed to read run directory {}", run.display()))?;
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
        _ => bail!(
            "{} holds no finished train-vae and attribute-vectors stages; run the experiment first, or pass `--model` and `--vectors`",
            run.display()
        ),
    }
}

fn modify_one(
    path: &Path,
    args: &ModifyArgs,
    spec: &VaeSpec,
    vae: &models::Vae,
    vector: &Tensor,
    device: Device,
) -> Result<PathBuf> {
    let image = image::open(path).context("not a readable image")?.to_rgb8();
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
    let canvas = put_images_on_grid(&common::to_nhwc_vec(&pixels)?, s, args.amounts.len(), 1)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let out = args
        .output
        .join(format!("{stem}_{}.png", args.attribute.to_lowercase()));
    canvas.save_png(&out, args.grid_scaling)?;
    Ok(out)
}
