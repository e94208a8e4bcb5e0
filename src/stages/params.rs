//! Helpers for stage params that several kinds share: deserialising, and the upper bounds
//! every size-like param is checked against in `validate` (see [`crate::limits`]).

use serde::{Deserialize, Deserializer};

use crate::limits;

/// Accepts `["a", "b"]` or the original's `"a,b, c"` (spaces stripped, as train_vae.py:126).
pub fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v.into_iter().map(|s| s.trim().to_owned()).collect(),
        Either::Text(s) => s
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect(),
    })
}

/// An issue for `path` when `value` exceeds `max`, saying what the bound protects.
pub fn at_most(
    path: &str,
    value: u64,
    max: u64,
    what: &str,
) -> Option<vaepipe_engine::stage::ParamIssue> {
    (value > max).then(|| vaepipe_engine::stage::ParamIssue {
        path: path.into(),
        message: format!("`{path}` = {value} is more than the {max} allowed ({what})"),
        help: Some(format!(
            "use a value up to {max}; larger ones would exhaust memory before the stage starts"
        )),
    })
}

/// The issues for a batch of `batch_size` square crops of side `side`: each bounded alone,
/// and their product by [`limits::BATCH_BYTES`], reported at `batch_size`.
pub fn batch_bounds(
    batch_size: (&str, u64),
    side: (&str, u64),
) -> Vec<vaepipe_engine::stage::ParamIssue> {
    let mut issues: Vec<_> = [
        at_most(
            batch_size.0,
            batch_size.1,
            limits::BATCH_SIZE,
            "images a batch",
        ),
        at_most(side.0, side.1, limits::IMAGE_SIDE, "pixels a side"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let bytes = batch_size
        .1
        .saturating_mul(side.1)
        .saturating_mul(side.1)
        .saturating_mul(3 * 4);
    if issues.is_empty() && bytes > limits::BATCH_BYTES {
        issues.push(vaepipe_engine::stage::ParamIssue {
            path: batch_size.0.into(),
            message: format!(
                "a batch of {} crops of {}×{} px takes {:.1} GiB, more than the {} GiB allowed",
                batch_size.1,
                side.1,
                side.1,
                bytes as f64 / (1u64 << 30) as f64,
                limits::BATCH_BYTES >> 30
            ),
            help: Some(format!("lower `{}` or `{}`", batch_size.0, side.0)),
        });
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_param_and_the_limit() {
        assert!(at_most("latent_size", 100, limits::VECTOR_WIDTH, "x").is_none());
        let issue = at_most(
            "latent_size",
            100_000,
            limits::VECTOR_WIDTH,
            "numbers a vector",
        )
        .unwrap();
        assert_eq!(issue.path, "latent_size");
        assert!(issue.message.contains("100000") && issue.message.contains("16384"));
    }

    #[test]
    fn a_batch_is_bounded_alone_and_by_its_bytes() {
        assert!(batch_bounds(("batch_size", 128), ("input_image_size", 160)).is_empty());
        let side = batch_bounds(("batch_size", 128), ("input_image_size", 100_000));
        assert_eq!(side.len(), 1);
        assert_eq!(side[0].path, "input_image_size");
        // Each fine alone, 4096 × 2048² × 12 bytes = 192 GiB together.
        let both = batch_bounds(("batch_size", 4096), ("input_image_size", 2048));
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].path, "batch_size");
        assert!(both[0].message.contains("GiB"), "{}", both[0].message);
    }
}
