//! Linear attribute probes: one logistic regression per CelebA attribute on latent means,
//! trained on partition 0 and scored on partition 2 — the DFC-VAE paper's attribute
//! prediction table, on our data — and reused to read P(attribute) off re-encoded faces.
//!
//! All 40 probes train at once as one [L × F] weight matrix with full-batch gradient descent
//! on standardised inputs (tch on the CPU: the data is a few thousand × 100). Deterministic:
//! zero init, fixed iteration count, no sampling.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinearProbe {
    pub latent_size: usize,
    pub fields: Vec<String>,
    /// Input standardisation learnt on the training rows.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// [L × F] row-major
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

pub struct ProbeData<'a> {
    /// [N × L]
    pub latents: &'a [f32],
    /// [N × F], ±1 (others ignored)
    pub labels: &'a [f32],
}

const ITERATIONS: i64 = 300;
const LEARNING_RATE: f64 = 0.5;
const L2: f64 = 1e-3;

impl LinearProbe {
    pub fn fit(fields: Vec<String>, latent_size: usize, train: &ProbeData<'_>) -> Result<Self> {
        let f = fields.len();
        let n = train.latents.len() / latent_size.max(1);
        if n == 0 || train.labels.len() != n * f {
            bail!(
                "probe: no training rows, or labels ({}) do not match {n} rows × {f} fields",
                train.labels.len()
            );
        }
        let x = Tensor::from_slice(train.latents).view([n as i64, latent_size as i64]);
        let mean = x.mean_dim(0, false, Kind::Float);
        let scale = x.std_dim(0, false, false).clamp_min(1e-6);
        let xs = (&x - &mean) / &scale;
        let y = Tensor::from_slice(train.labels).view([n as i64, f as i64]);
        let known = y.abs().eq(1.0).to_kind(Kind::Float);
        let target = (&y + 1.0) / 2.0 * &known; // {0, 1}
        let counts = known.sum_dim_intlist(0, false, Kind::Float).clamp_min(1.0);
        let mut w = Tensor::zeros([latent_size as i64, f as i64], (Kind::Float, Device::Cpu));
        let mut b = Tensor::zeros([f as i64], (Kind::Float, Device::Cpu));
        for _ in 0..ITERATIONS {
            let p = (xs.matmul(&w) + &b).sigmoid();
            let err = (&p - &target) * &known / &counts; // mean over known rows, per attribute
            let gw = xs.transpose(0, 1).matmul(&err) + &w * L2;
            let gb = err.sum_dim_intlist(0, false, Kind::Float);
            w -= gw * LEARNING_RATE;
            b -= gb * LEARNING_RATE;
        }
        Ok(LinearProbe {
            latent_size,
            fields,
            mean: Vec::try_from(&mean)?,
            scale: Vec::try_from(&scale)?,
            weights: Vec::try_from(&w.flatten(0, -1))?,
            bias: Vec::try_from(&b)?,
        })
    }

    /// P(attribute) for each row: [N × F].
    pub fn predict(&self, latents: &[f32]) -> Result<Vec<f32>> {
        let (l, f) = (self.latent_size as i64, self.fields.len() as i64);
        if latents.len() as i64 % l != 0 {
            bail!(
                "probe: {} values are not rows of latent size {l}",
                latents.len()
            );
        }
        let x = Tensor::from_slice(latents).view([-1, l]);
        let xs = (x - Tensor::from_slice(&self.mean)) / Tensor::from_slice(&self.scale);
        let p = (xs.matmul(&Tensor::from_slice(&self.weights).view([l, f]))
            + Tensor::from_slice(&self.bias))
        .sigmoid();
        Ok(Vec::try_from(&p.flatten(0, -1))?)
    }

    /// Accuracy per attribute on labelled rows (NaN where no row is labelled).
    pub fn accuracy(&self, data: &ProbeData<'_>) -> Result<Vec<f64>> {
        let p = self.predict(data.latents)?;
        let f = self.fields.len();
        let mut right = vec![0usize; f];
        let mut seen = vec![0usize; f];
        for (i, (&prob, &label)) in p.iter().zip(data.labels).enumerate() {
            if label.abs() != 1.0 {
                continue;
            }
            seen[i % f] += 1;
            if (prob >= 0.5) == (label > 0.0) {
                right[i % f] += 1;
            }
        }
        Ok(right
            .iter()
            .zip(&seen)
            .map(|(&r, &s)| {
                if s == 0 {
                    f64::NAN
                } else {
                    r as f64 / s as f64
                }
            })
            .collect())
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_attribute_and_scores_chance_on_noise() {
        // 2-D latents: attribute 0 is the sign of dim 0; attribute 1 is unrelated (alternating).
        let mut latents = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200 {
            let a = (i as f32 * 0.37).sin() * 3.0;
            let b = (i as f32 * 1.3).cos();
            latents.extend([a, b]);
            labels.extend([
                if a > 0.0 { 1.0 } else { -1.0 },
                if (i / 7) % 2 == 0 { 1.0 } else { -1.0 },
            ]);
        }
        let data = ProbeData {
            latents: &latents,
            labels: &labels,
        };
        let probe = LinearProbe::fit(vec!["Smiling".into(), "Noise".into()], 2, &data).unwrap();
        let acc = probe.accuracy(&data).unwrap();
        assert!(acc[0] > 0.97, "separable attribute: {acc:?}");
        assert!(
            acc[1] < 0.8,
            "an unrelated attribute cannot be predicted well: {acc:?}"
        );
        let p = probe.predict(&[3.0, 0.0, -3.0, 0.0]).unwrap();
        assert!(p[0] > 0.9 && p[2] < 0.1, "{p:?}");
    }

    #[test]
    fn mismatched_labels_are_an_error() {
        let data = ProbeData {
            latents: &[1.0, 2.0],
            labels: &[1.0],
        };
        assert!(LinearProbe::fit(vec!["a".into(), "b".into()], 2, &data).is_err());
    }
}
