//! Stage `render-attribute`: facenet's modify_attribute.py — add growing amounts of one
//! attribute vector to the latents of faces that lack the attribute, decode with
//! inference-mode BN, and lay the results on a grid (`add_smile.png` for the default sweep).
//!
//! Then it measures what the original only showed: the rendered faces are re-encoded
//! (inference-mode BN, means), projected on the attribute's direction, and scored by the
//! attribute probe that `attribute-vectors` fitted; `metrics.json` reports per amount the mean
//! projection and P(attribute), each face's P per amount, and the share of faces whose P rises
//! from the first amount to the last. The grid also goes into a TensorBoard event file.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use vaepipe_engine::stage::{ParamIssue, Role, Stage, StageCx};

use crate::analysis::probe::LinearProbe;
use crate::formats::attribute_vectors_h5::AttributeVectors;
use crate::formats::image_grid::{put_images_on_grid, GridScaling};
use crate::formats::vae_spec::VaeSpec;
use crate::models::preprocess::to_nhwc_vec;
use crate::stages::attribute_vectors::PROBE_FILE;

pub struct RenderAttribute;

/// modify_attribute.py:103 — indices into the rows that lack the attribute.
pub const ORIGINAL_FACES: [usize; 16] = [
    8, 11, 13, 18, 19, 26, 31, 39, 47, 54, 56, 57, 58, 59, 60, 73,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Faces {
    /// Indices into the rows that lack the attribute, in file-name order.
    List(Vec<usize>),
    /// The first N rows that lack the attribute.
    Count { count: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderAttributeParams {
    /// CelebA attribute name (index 31 `Smiling` is the published sweep).
    pub attribute: String,
    /// Which faces: a list of indices among rows without the attribute, or `{ count = N }`.
    pub faces: Faces,
    /// Multiples of the vector to add; the original's 5·i/10 for i = 0..9.
    pub amounts: Vec<f64>,
    /// `clip` (true colours) or `minmax` (the original's bytescale).
    pub grid_scaling: GridScaling,
}

impl Default for RenderAttributeParams {
    fn default() -> Self {
        RenderAttributeParams {
            attribute: "Smiling".into(),
            faces: Faces::List(ORIGINAL_FACES.to_vec()),
            amounts: (0..10).map(|i| 5.0 * i as f64 / 10.0).collect(),
            grid_scaling: GridScaling::Clip,
        }
    }
}

impl Stage for RenderAttribute {
    const KIND: &'static str = "render-attribute";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "adds growing amounts of an attribute vector to faces and renders the grid";
    type Params = RenderAttributeParams;

    fn roles() -> &'static [Role] {
        &[
            Role {
                name: "model",
                required: true,
                doc: "a `train-vae` stage",
            },
            Role {
                name: "vectors",
                required: true,
                doc: "an `attribute-vectors` stage",
            },
        ]
    }

    fn validate(p: &Self::Params) -> Vec<ParamIssue> {
        let mut issues = Vec::new();
        if !vaepipe_facedata::CELEBA_ATTRIBUTES.contains(&p.attribute.as_str()) {
            let best = vaepipe_facedata::CELEBA_ATTRIBUTES
                .iter()
                .min_by_key(|a| strsim::levenshtein(&a.to_lowercase(), &p.attribute.to_lowercase()))
                .map(|a| format!("did you mean `{a}`?"));
            issues.push(ParamIssue {
                path: "attribute".into(),
                message: format!("`{}` is not a CelebA attribute", p.attribute),
                help: best,
            });
        }
        if p.amounts.is_empty() {
            issues.push(ParamIssue {
                path: "amounts".into(),
                message: "at least one amount is needed".into(),
                help: None,
            });
        }
        if matches!(&p.faces, Faces::List(v) if v.is_empty())
            || matches!(p.faces, Faces::Count { count: 0 })
        {
            issues.push(ParamIssue {
                path: "faces".into(),
                message: "at least one face is needed".into(),
                help: None,
            });
        }
        let faces = match &p.faces {
            Faces::List(v) => v.len(),
            Faces::Count { count } => *count,
        } as u64;
        let tiles = crate::limits::GRID_TILES;
        issues.extend(crate::stages::params::at_most(
            "faces",
            faces,
            tiles,
            "rows of the grid",
        ));
        issues.extend(crate::stages::params::at_most(
            "amounts",
            (p.amounts.len() as u64).saturating_mul(faces.max(1)),
            tiles,
            "tiles of the grid, faces × amounts",
        ));
        issues
    }

    fn uses_accelerator(_: &Self::Params) -> bool {
        true
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        let device = crate::device::for_stage(cx)?;
        let model_dir = cx.require_input("model")?.to_path_buf();
        let vectors_dir = cx.require_input("vectors")?.to_path_buf();
        let (spec, _vs, vae) = VaeSpec::load(&model_dir, device)?;
        let vectors = AttributeVectors::read(&vectors_dir.join("attribute_vectors.h5"))?;
        let Some(attr) = vectors.fields.iter().position(|f| *f == p.attribute) else {
            bail!(
                "{} has no attribute `{}`",
                vectors_dir.display(),
                p.attribute
            );
        };
        if vectors.vector_defined.as_ref().is_some_and(|d| !d[attr]) {
            bail!("the `{}` vector is undefined: the encoded set has no rows with it, or none without it", p.attribute);
        }
        let l = vectors.latent_size;
        if l != spec.latent_size {
            bail!(
                "the vectors have latent size {l} but the model has {}",
                spec.latent_size
            );
        }
        let f = vectors.fields.len();
        let lacking: Vec<usize> = (0..vectors.rows())
            .filter(|&r| vectors.attributes[r * f + attr] == -1.0)
            .collect();
        let chosen: Vec<usize> = match &p.faces {
            Faces::List(list) => list.clone(),
            Faces::Count { count } => (0..*count).collect(),
        };
        if let Some(&bad) = chosen.iter().find(|&&i| i >= lacking.len()) {
            bail!(
                "face index {bad} is out of range: only {} encoded rows lack `{}`; use `faces = {{ count = N }}` or smaller indices",
                lacking.len(),
                p.attribute
            );
        }
        let vector = Tensor::from_slice(&vectors.attribute_vectors[attr * l..(attr + 1) * l])
            .to_device(device);
        let steps = p.amounts.len();
        // Row-major over (face, amount): face j's sweep is a run of `steps` latents.
        let what = "latents to render";
        let mut latents = crate::limits::with_capacity(
            crate::limits::product(&[chosen.len(), steps, l], what)?,
            what,
        )?;
        for &j in &chosen {
            let row = lacking[j];
            let z = &vectors.latent_vars[row * l..(row + 1) * l];
            for &amount in &p.amounts {
                latents.extend(
                    z.iter()
                        .zip(&vectors.attribute_vectors[attr * l..(attr + 1) * l])
                        .map(|(&z, &v)| (z + amount * v as f64) as f32),
                );
            }
        }
        let z = Tensor::from_slice(&latents)
            .view([(chosen.len() * steps) as i64, l as i64])
            .to_device(device);
        let rendered = tch::no_grad(|| vae.decode(&z, false)); // [N·steps, 3, s, s] normalised
        let pixels = spec.normalization.to_pixels(&rendered);
        let s = spec.model.image_size() as usize;

        // The original's layout: two faces per row, each a run of `steps` tiles.
        let cols = steps * 2;
        let rows = chosen.len().div_ceil(2);
        let canvas = put_images_on_grid(&to_nhwc_vec(&pixels)?, s, cols, rows)?;
        let name = if p.attribute == "Smiling" {
            "add_smile.png".to_owned()
        } else {
            format!("add_{}.png", p.attribute.to_lowercase())
        };
        canvas.save_png(&cx.out_dir().join(&name), p.grid_scaling)?;
        let mut events = crate::formats::tensorboard::EventWriter::resume(cx.out_dir(), 0)?;
        events.png_file(name.trim_end_matches(".png"), 0, &cx.out_dir().join(&name))?;
        events.flush()?;

        let metrics = measure(
            &vae,
            &rendered,
            &vector,
            &vectors_dir,
            &p.attribute,
            chosen.len(),
            steps,
            device,
        )?;
        let (first, last) = (
            metrics.mean_probability.first().copied(),
            metrics.mean_probability.last().copied(),
        );
        let mut metrics = serde_json::to_value(metrics)?;
        // Scalars, so the run summary and a sweep's table show the gain at a glance.
        metrics["probability_first_amount"] = serde_json::json!(first);
        metrics["probability_last_amount"] = serde_json::json!(last);
        metrics["amounts"] = serde_json::json!(p.amounts);
        metrics["grid"] = serde_json::json!(name);
        metrics["attribute"] = serde_json::json!(p.attribute);
        std::fs::write(
            cx.out_dir().join("metrics.json"),
            serde_json::to_vec_pretty(&metrics)?,
        )?;
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct AttributeGain {
    /// Mean projection of the re-encoded faces on the unit attribute direction, per amount.
    mean_projection: Vec<f64>,
    /// Mean probe P(attribute) of the re-encoded faces, per amount.
    mean_probability: Vec<f64>,
    /// Each face's P(attribute), per amount (faces × amounts).
    probability_per_face: Vec<Vec<f64>>,
    /// Share of faces whose P(attribute) is higher at the last amount than at the first.
    share_rising: f64,
    /// How many faces that is.
    faces_rising: usize,
}

#[allow(clippy::too_many_arguments)]
fn measure(
    vae: &crate::models::Vae,
    rendered: &Tensor,
    vector: &Tensor,
    vectors_dir: &std::path::Path,
    attribute: &str,
    faces: usize,
    steps: usize,
    _device: Device,
) -> Result<AttributeGain> {
    let probe_path = vectors_dir.join(PROBE_FILE);
    let probe: LinearProbe = serde_json::from_slice(
        &std::fs::read(&probe_path)
            .with_context(|| format!("failed to read {}", probe_path.display()))?,
    )?;
    let index = probe
        .field_index(attribute)
        .with_context(|| format!("the probe has no `{attribute}`"))?;
    let (means, _) = tch::no_grad(|| vae.encode(rendered, false));
    let unit = vector / vector.norm().clamp_min(1e-12);
    let projection: Vec<f32> = Vec::try_from(
        &means
            .matmul(&unit)
            .to_device(Device::Cpu)
            .to_kind(Kind::Float),
    )?;
    let flat: Vec<f32> = Vec::try_from(
        &means
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )?;
    let probs = probe.predict(&flat)?;
    let f = probe.fields.len();
    let p_at = |face: usize, step: usize| probs[(face * steps + step) * f + index] as f64;
    let per_step = |value: &dyn Fn(usize, usize) -> f64| -> Vec<f64> {
        (0..steps)
            .map(|s| (0..faces).map(|j| value(j, s)).sum::<f64>() / faces as f64)
            .collect()
    };
    let rising = (0..faces)
        .filter(|&j| p_at(j, steps - 1) > p_at(j, 0))
        .count();
    Ok(AttributeGain {
        mean_projection: per_step(&|j, s| projection[j * steps + s] as f64),
        mean_probability: per_step(&|j, s| p_at(j, s)),
        probability_per_face: (0..faces)
            .map(|j| (0..steps).map(|s| p_at(j, s)).collect())
            .collect(),
        share_rising: rising as f64 / faces.max(1) as f64,
        faces_rising: rising,
    })
}
