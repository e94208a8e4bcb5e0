//! What `vaepipe verify` says about an output file whose bytes differ from the lock: for
//! tensors (`.safetensors`) and HDF5 datasets (`.h5`), the largest absolute difference per
//! tensor, so a user can tell float noise (another thread count, a GPU) from a real change.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Kind, Tensor};

/// A one-line description of how `recomputed` differs from `locked`, or `None` for a file
/// type it cannot look inside.
pub fn describe_difference(locked: &Path, recomputed: &Path) -> Option<String> {
    let ext = recomputed.extension()?.to_str()?;
    let diffs = match ext {
        "safetensors" => tensor_diffs(locked, recomputed),
        "h5" => h5_diffs(locked, recomputed),
        _ => return None,
    };
    Some(match diffs {
        Ok(d) if d.is_empty() => "same tensors, different bytes (metadata only)".to_owned(),
        Ok(d) => {
            let worst = d.iter().fold(
                ("", 0f64),
                |acc, (k, v)| if *v > acc.1 { (k.as_str(), *v) } else { acc },
            );
            let differing = d.values().filter(|v| **v != 0.0).count();
            format!(
                "{differing} of {} tensors differ; max |Δ| = {:.3e} in `{}`",
                d.len(),
                worst.1,
                worst.0
            )
        }
        Err(e) => format!("could not compare: {e}"),
    })
}

fn tensor_diffs(a: &Path, b: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let left: BTreeMap<String, Tensor> = Tensor::read_safetensors(a)?.into_iter().collect();
    let mut out = BTreeMap::new();
    for (name, right) in Tensor::read_safetensors(b)? {
        let diff = match left.get(&name) {
            Some(l) if l.size() == right.size() => (l.to_kind(Kind::Double)
                - right.to_kind(Kind::Double))
            .abs()
            .max()
            .double_value(&[]),
            _ => f64::INFINITY,
        };
        out.insert(name, diff);
    }
    Ok(out)
}

fn h5_diffs(a: &Path, b: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let (fa, fb) = (hdf5::File::open(a)?, hdf5::File::open(b)?);
    let mut out = BTreeMap::new();
    for name in fb.member_names()? {
        let (Ok(da), Ok(db)) = (fa.dataset(&name), fb.dataset(&name)) else {
            continue;
        };
        let (Ok(va), Ok(vb)) = (da.read_raw::<f64>(), db.read_raw::<f64>()) else {
            continue;
        };
        let diff = if va.len() == vb.len() {
            va.iter()
                .zip(&vb)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        } else {
            f64::INFINITY
        };
        out.insert(name, diff);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_largest_tensor_difference() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
        );
        let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let v = Tensor::from_slice(&[5.0f32]);
        Tensor::write_safetensors(&[("w", &w), ("v", &v)], &a).unwrap();
        Tensor::write_safetensors(
            &[
                ("w", &(&w + Tensor::from_slice(&[0.0f32, 0.25, 0.0]))),
                ("v", &v),
            ],
            &b,
        )
        .unwrap();
        let text = describe_difference(&a, &b).unwrap();
        assert!(
            text.starts_with("1 of 2 tensors differ; max |Δ| = 2.500e-1 in `w`"),
            "{text}"
        );
        assert_eq!(
            describe_difference(&a.with_extension("txt"), &b.with_extension("txt")),
            None
        );
    }
}
