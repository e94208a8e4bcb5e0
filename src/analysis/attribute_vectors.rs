//! Attribute vectors in latent space (calculate_attribute_vectors.py:140-146): for attribute
//! i, the mean latent of rows labelled 1 minus the mean of rows labelled −1.
//!
//! The original divides by zero (NaN row) when an attribute has no positives or no
//! negatives; here such a vector is zero and marked undefined, and the caller warns.

/// Labels are CelebA's ±1; anything else counts as neither.
pub struct LatentTable<'a> {
    /// [N × L] row-major
    pub latents: &'a [f64],
    pub latent_size: usize,
    /// [N × F] row-major, ±1
    pub labels: &'a [f64],
    pub fields: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttributeVectorSet {
    /// [F × L]
    pub vectors: Vec<f32>,
    pub defined: Vec<bool>,
    /// (positives, negatives) per attribute
    pub counts: Vec<(usize, usize)>,
}

pub fn compute(table: &LatentTable<'_>) -> AttributeVectorSet {
    let (l, f) = (table.latent_size, table.fields);
    let n = table.latents.len().checked_div(l).unwrap_or(0);
    let mut pos_sum = vec![0f64; f * l];
    let mut neg_sum = vec![0f64; f * l];
    let mut counts = vec![(0usize, 0usize); f];
    for row in 0..n {
        let z = &table.latents[row * l..(row + 1) * l];
        for a in 0..f {
            let (sum, count) = match table.labels[row * f + a] {
                1.0 => (&mut pos_sum, &mut counts[a].0),
                -1.0 => (&mut neg_sum, &mut counts[a].1),
                _ => continue,
            };
            *count += 1;
            for (s, &x) in sum[a * l..(a + 1) * l].iter_mut().zip(z) {
                *s += x;
            }
        }
    }
    let mut vectors = vec![0f32; f * l];
    let mut defined = vec![false; f];
    for a in 0..f {
        let (p, q) = counts[a];
        if p == 0 || q == 0 {
            continue;
        }
        defined[a] = true;
        for d in 0..l {
            vectors[a * l + d] =
                (pos_sum[a * l + d] / p as f64 - neg_sum[a * l + d] / q as f64) as f32;
        }
    }
    AttributeVectorSet {
        vectors,
        defined,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_is_mean_of_positives_minus_mean_of_negatives() {
        // 4 rows, L = 2, two attributes; the second has no negatives.
        let latents = [1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 5.0, -2.0];
        let labels = [1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0];
        let set = compute(&LatentTable {
            latents: &latents,
            latent_size: 2,
            labels: &labels,
            fields: 2,
        });
        // positives of attr 0: rows 0,1 → mean (2, 3); negatives rows 2,3 → mean (2, -1)
        assert_eq!(&set.vectors[0..2], &[0.0, 4.0]);
        assert_eq!(set.counts, vec![(2, 2), (4, 0)]);
        assert_eq!(set.defined, vec![true, false]);
        assert_eq!(
            &set.vectors[2..4],
            &[0.0, 0.0],
            "undefined vectors are zero, never NaN"
        );
    }

    #[test]
    fn labels_other_than_plus_minus_one_are_ignored() {
        let latents = [1.0, 10.0, 100.0];
        let labels = [1.0, 0.0, -1.0];
        let set = compute(&LatentTable {
            latents: &latents,
            latent_size: 1,
            labels: &labels,
            fields: 1,
        });
        assert_eq!(set.vectors, vec![-99.0]);
        assert_eq!(set.counts, vec![(1, 1)]);
    }
}
