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

/// The sizes and schedule every training kind (`train-vae`, `train-facenet`) checks alike.
pub struct TrainingBounds<'a> {
    /// Counts that must be at least 1 (steps, batch, width, save interval, decay steps).
    pub counts: &'a [(&'a str, usize)],
    pub batch_size: usize,
    pub input_image_size: usize,
    /// The learning-rate param and its value (positive and finite).
    pub learning_rate: (&'a str, f64),
    /// The vector-width param (latent or embedding size), its value, and what it numbers.
    pub width: (&'a str, usize, &'a str),
}

/// The issues of [`TrainingBounds`]: every count at least 1, a centre crop of at least 16 px,
/// a positive learning rate, and the upper bounds of [`batch_bounds`] and the vector width.
pub fn training_bounds(b: &TrainingBounds<'_>) -> Vec<vaepipe_engine::stage::ParamIssue> {
    use vaepipe_engine::stage::ParamIssue;
    let issue = |path: &str, message: String| ParamIssue {
        path: path.into(),
        message,
        help: None,
    };
    let mut issues: Vec<ParamIssue> = b
        .counts
        .iter()
        .filter(|(_, value)| *value == 0)
        .map(|(path, _)| issue(path, format!("`{path}` must be at least 1")))
        .collect();
    if b.input_image_size < 16 {
        issues.push(issue(
            "input_image_size",
            "the centre crop must be at least 16 px".into(),
        ));
    }
    let (rate_path, rate) = b.learning_rate;
    if !(rate > 0.0 && rate.is_finite()) {
        issues.push(issue(rate_path, "must be a positive number".into()));
    }
    issues.extend(batch_bounds(
        ("batch_size", b.batch_size as u64),
        ("input_image_size", b.input_image_size as u64),
    ));
    let (width_path, width, what) = b.width;
    issues.extend(at_most(
        width_path,
        width as u64,
        limits::VECTOR_WIDTH,
        what,
    ));
    issues
}

#[cfg(test)]
mod training_bounds_tests {
    use super::*;

    fn bounds(counts: &[(&'static str, usize)], side: usize, rate: f64) -> Vec<String> {
        training_bounds(&TrainingBounds {
            counts,
            batch_size: 8,
            input_image_size: side,
            learning_rate: ("learning_rate", rate),
            width: ("latent_size", 20_000, "numbers a latent vector"),
        })
        .into_iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect()
    }

    #[test]
    fn each_bound_names_its_param() {
        let got = bounds(&[("max_steps", 0), ("save_every", 3)], 8, f64::NAN);
        assert_eq!(
            got,
            [
                "max_steps: `max_steps` must be at least 1",
                "input_image_size: the centre crop must be at least 16 px",
                "learning_rate: must be a positive number",
                "latent_size: `latent_size` = 20000 is more than the 16384 allowed (numbers a latent vector)",
            ]
        );
        assert_eq!(bounds(&[("max_steps", 1)], 16, 0.1).len(), 1);
    }
}
