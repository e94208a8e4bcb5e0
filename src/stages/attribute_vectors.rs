//! Stage `attribute-vectors`: facenet's calculate_attribute_vectors.py on the latents that
//! `encode` stored — for all 40 attributes, mean latent with minus mean without — written as
//! an h5py-compatible `attribute_vectors.h5`. Beyond the original it fits the linear
//! attribute probes (train on partition 0, test on partition 2) that `render-attribute` and
//! the run summary use to measure what the vectors do.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use vaepipe_engine::stage::{Role, Stage, StageCx};

use crate::analysis::attribute_vectors::{compute, LatentTable};
use crate::analysis::probe::{LinearProbe, ProbeData};
use crate::formats::attribute_vectors_h5::AttributeVectors;
use crate::formats::latents_h5::LatentSet;

pub struct AttributeVectorsStage;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatentSource {
    /// The sampled z = mean + ε·std, as the original.
    #[default]
    Sampled,
    /// The encoder's means.
    Mean,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeVectorsParams {
    /// Which latents the vectors average: `sampled` (the original) or `mean`.
    pub latent_source: LatentSource,
}

pub const PROBE_FILE: &str = "probe.json";

impl Stage for AttributeVectorsStage {
    const KIND: &'static str = "attribute-vectors";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "computes the 40 CelebA attribute vectors in latent space, and linear attribute probes";
    type Params = AttributeVectorsParams;

    fn roles() -> &'static [Role] {
        &[Role {
            name: "latents",
            required: true,
            doc: "an `encode` stage",
        }]
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        let set = LatentSet::read(&cx.require_input("latents")?.join(LatentSet::FILE))?;
        let l = set.latent_size;
        let source = match p.latent_source {
            LatentSource::Sampled => &set.latent_vars,
            LatentSource::Mean => &set.latent_means,
        };
        let vectors = compute(&LatentTable {
            latents: source,
            latent_size: l,
            labels: &set.attributes,
            fields: set.fields.len(),
        });
        cx.check_cancelled()?;
        let mut undefined = Vec::new();
        for (i, &ok) in vectors.defined.iter().enumerate() {
            if !ok {
                let (pos, neg) = vectors.counts[i];
                tracing::warn!(
                    "attribute `{}` has {pos} positive and {neg} negative rows: its vector is undefined (zero)",
                    set.fields[i]
                );
                undefined.push(set.fields[i].clone());
            }
        }
        AttributeVectors {
            latent_size: l,
            fields: set.fields.clone(),
            latent_vars: source.clone(),
            latent_means: Some(set.latent_means.clone()),
            attributes: set.attributes.clone(),
            attribute_vectors: vectors.vectors.clone(),
            file_names: Some(set.file_names.clone()),
            vector_defined: Some(vectors.defined.clone()),
        }
        .write(&cx.out_dir().join("attribute_vectors.h5"))?;

        cx.check_cancelled()?;
        // Probes on the means: train on partition 0, test on 2 (all rows when partitions are
        // unknown, said so in the metrics).
        let rows = set.rows();
        let f = set.fields.len();
        let split = |want: u8| -> (Vec<f32>, Vec<f32>) {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for r in 0..rows {
                if set.partition.get(r).copied().unwrap_or(want) == want {
                    x.extend(
                        set.latent_means[r * l..(r + 1) * l]
                            .iter()
                            .map(|&v| v as f32),
                    );
                    y.extend(set.attributes[r * f..(r + 1) * f].iter().map(|&v| v as f32));
                }
            }
            (x, y)
        };
        let (train_x, train_y) = split(0);
        let (mut test_x, mut test_y) = split(2);
        let held_out = !test_x.is_empty();
        if !held_out {
            tracing::warn!("no rows in partition 2: the probe is scored on its own training rows");
            (test_x, test_y) = (train_x.clone(), train_y.clone());
        }
        if train_x.is_empty() {
            bail!("no rows in partition 0 to train the attribute probes on");
        }
        let probe = LinearProbe::fit(
            set.fields.clone(),
            l,
            &ProbeData {
                latents: &train_x,
                labels: &train_y,
            },
        )?;
        let accuracy = probe.accuracy(&ProbeData {
            latents: &test_x,
            labels: &test_y,
        })?;
        std::fs::write(cx.out_dir().join(PROBE_FILE), serde_json::to_vec(&probe)?)?;
        let scored: Vec<f64> = accuracy.iter().copied().filter(|a| a.is_finite()).collect();
        let average = scored.iter().sum::<f64>() / scored.len().max(1) as f64;
        let per_attribute: serde_json::Map<String, serde_json::Value> = set
            .fields
            .iter()
            .zip(&accuracy)
            .map(|(k, &a)| (k.clone(), serde_json::json!(a.is_finite().then_some(a))))
            .collect();
        let metrics = serde_json::json!({
            "probe_average_accuracy": average,
            "probe_test_rows": test_x.len() / l.max(1),
            "probe_held_out": held_out,
            "undefined_attributes": undefined,
            "probe_accuracy": per_attribute,
        });
        std::fs::write(
            cx.out_dir().join("metrics.json"),
            serde_json::to_vec_pretty(&metrics)?,
        )?;
        Ok(())
    }
}
