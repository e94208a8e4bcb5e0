//! A search space: each searched param's distribution (`uniform`, `log_uniform`, `int_uniform`,
//! `choice`), how it is read from `[sweep] space`, and the seeded randomness every strategy draws
//! from.
//!
//! Randomness is a pure function of its inputs: [`unit`] hashes (seed, trial, param path, a
//! purpose word) with blake3 into a number in [0, 1), and [`Draws`] is a SplitMix64 stream seeded
//! the same way. Nothing depends on a global generator, the number of trials or the order in which
//! results arrived, so trial 5's values are the same in a sweep of 8 trials or of 80.

use std::ops::Range;

use serde_json::Value;

use crate::config::error::{suggestion, ConfigError};
use crate::config::raw::{RawDistribution, RawField};

/// The distribution names `space` accepts.
pub const DISTRIBUTIONS: &[&str] = &["uniform", "log_uniform", "int_uniform", "choice"];

/// One param's distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Floats, evenly in [low, high].
    Uniform { low: f64, high: f64 },
    /// Floats whose logarithm is even in [ln low, ln high]; `low > 0`.
    LogUniform { low: f64, high: f64 },
    /// Integers in [low, high], both included.
    IntUniform { low: i64, high: i64 },
    /// One of the listed values (any TOML value: numbers, strings, lists).
    Choice(Vec<Value>),
}

/// A searched param.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParam {
    /// `stage.train.alfa`.
    pub path: String,
    pub path_span: Range<usize>,
    /// The distribution table's span (where a value's type error is shown).
    pub span: Range<usize>,
    pub distribution: Distribution,
}

impl Distribution {
    /// A few values that exercise the param's type: the bounds, or every choice.
    pub fn probes(&self) -> Vec<Value> {
        match self {
            Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                vec![Value::from(*low), Value::from(*high)]
            }
            Distribution::IntUniform { low, high } => vec![Value::from(*low), Value::from(*high)],
            Distribution::Choice(options) => options.clone(),
        }
    }

    /// The value at `u` ∈ [0, 1) of the distribution's quantile function.
    pub fn at(&self, u: f64) -> Value {
        match self {
            Distribution::Uniform { low, high } => float(low + u * (high - low), *low, *high),
            Distribution::LogUniform { low, high } => {
                let (a, b) = (low.ln(), high.ln());
                float((a + u * (b - a)).exp(), *low, *high)
            }
            Distribution::IntUniform { low, high } => {
                let span = (high - low) as f64 + 1.0;
                Value::from((*low + (u * span).floor() as i64).min(*high))
            }
            Distribution::Choice(options) => {
                let i = ((u * options.len() as f64).floor() as usize).min(options.len() - 1);
                options[i].clone()
            }
        }
    }
}

/// A float rounded to 6 significant digits (readable in tables and names; the rounding is part of
/// the proposal, so it is as deterministic as the draw), kept inside the bounds.
pub fn float(x: f64, low: f64, high: f64) -> Value {
    let rounded = if x == 0.0 || !x.is_finite() {
        x
    } else {
        let digits = 5 - x.abs().log10().floor() as i32;
        let scale = 10f64.powi(digits);
        (x * scale).round() / scale
    };
    Value::from(rounded.clamp(low, high))
}

/// A number in [0, 1) from (seed, trial, path, purpose): the same inputs, the same number.
pub fn unit(seed: u64, trial: usize, path: &str, purpose: &str) -> f64 {
    Draws::new(seed, trial, path, purpose).next_unit()
}

/// A seeded stream of numbers in [0, 1) (SplitMix64), for strategies that draw many.
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64, trial: usize, path: &str, purpose: &str) -> Draws {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(&(trial as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(&[0]);
        h.update(purpose.as_bytes());
        let bytes = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes.as_bytes()[..8]);
        Draws(u64::from_le_bytes(first))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_unit().max(f64::MIN_POSITIVE);
        let u2 = self.next_unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Reads one `space` entry; problems go to `errors` at their spans.
pub fn parse_distribution(
    raw: &RawDistribution,
    errors: &mut Vec<ConfigError>,
) -> Option<SearchParam> {
    let at = |span: &Range<usize>, message: String| ConfigError::at(span.clone(), message);
    let Some((first, rest)) = raw.fields.split_first() else {
        errors.push(
            at(
                &raw.span,
                format!("`space.\"{}\"` names no distribution", raw.path),
            )
            .with_help("write `{ uniform = [low, high] }`, `log_uniform`, `int_uniform` or `choice = [...]`"),
        );
        return None;
    };
    if let Some(extra) = rest.first() {
        errors.push(at(
            &extra.key_span,
            format!(
                "`space.\"{}\"` has two distributions (`{}` and `{}`); give one",
                raw.path, first.name, extra.name
            ),
        ));
        return None;
    }
    let distribution = distribution_of(&raw.path, first, errors)?;
    Some(SearchParam {
        path: raw.path.clone(),
        path_span: raw.path_span.clone(),
        span: first.span.clone(),
        distribution,
    })
}

fn distribution_of(
    path: &str,
    f: &RawField,
    errors: &mut Vec<ConfigError>,
) -> Option<Distribution> {
    let err =
        |message: String, help: &str| ConfigError::at(f.span.clone(), message).with_help(help);
    let name = f.name.as_str();
    if !DISTRIBUTIONS.contains(&name) {
        errors.push(
            ConfigError::at(
                f.key_span.clone(),
                format!("unknown distribution `{name}` for `{path}`"),
            )
            .with_help_opt(suggestion(name, DISTRIBUTIONS, "distributions")),
        );
        return None;
    }
    if name == "choice" {
        return match &f.value {
            Value::Array(options) if !options.is_empty() => {
                Some(Distribution::Choice(options.clone()))
            }
            _ => {
                errors.push(err(
                    format!("`choice` of `{path}` must be a non-empty list of values"),
                    "write `choice = [a, b, c]`",
                ));
                None
            }
        };
    }
    let pair = match &f.value {
        Value::Array(v) if v.len() == 2 => Some((&v[0], &v[1])),
        _ => None,
    };
    let help = format!("write `{name} = [low, high]`");
    let Some((a, b)) = pair else {
        errors.push(err(
            format!("`{name}` of `{path}` must be a list `[low, high]`"),
            &help,
        ));
        return None;
    };
    if name == "int_uniform" {
        let (Some(low), Some(high)) = (a.as_i64(), b.as_i64()) else {
            errors.push(err(
                format!("`int_uniform` of `{path}` needs two integers, found {a} and {b}"),
                "write `int_uniform = [1, 8]`, or use `uniform` for floats",
            ));
            return None;
        };
        if low > high {
            errors.push(err(
                format!("`int_uniform` of `{path}`: low {low} is above high {high}"),
                "write the smaller bound first",
            ));
            return None;
        }
        return Some(Distribution::IntUniform { low, high });
    }
    let (Some(low), Some(high)) = (a.as_f64(), b.as_f64()) else {
        errors.push(err(
            format!("`{name}` of `{path}` needs two numbers, found {a} and {b}"),
            &help,
        ));
        return None;
    };
    if low >= high || !low.is_finite() || !high.is_finite() {
        errors.push(err(
            format!(
                "`{name}` of `{path}` needs finite bounds with low < high, found [{low}, {high}]"
            ),
            "write the smaller bound first",
        ));
        return None;
    }
    if name == "log_uniform" {
        if low <= 0.0 {
            errors.push(err(
                format!("`log_uniform` of `{path}` needs positive bounds, found low {low}"),
                "use `uniform` for a range that includes 0 or negatives",
            ));
            return None;
        }
        return Some(Distribution::LogUniform { low, high });
    }
    Some(Distribution::Uniform { low, high })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn draws_are_a_function_of_their_inputs_and_spread_over_the_unit_interval() {
        assert_eq!(
            unit(7, 3, "stage.a.x", "random"),
            unit(7, 3, "stage.a.x", "random")
        );
        assert_ne!(
            unit(7, 3, "stage.a.x", "random"),
            unit(7, 4, "stage.a.x", "random")
        );
        assert_ne!(
            unit(7, 3, "stage.a.x", "random"),
            unit(8, 3, "stage.a.x", "random")
        );
        assert_ne!(
            unit(7, 3, "stage.a.x", "random"),
            unit(7, 3, "stage.a.y", "random")
        );
        let us: Vec<f64> = (0..1000).map(|i| unit(1, i, "p", "r")).collect();
        assert!(us.iter().all(|u| (0.0..1.0).contains(u)));
        let below_half = us.iter().filter(|u| **u < 0.5).count();
        assert!((400..600).contains(&below_half), "{below_half}");
    }

    #[test]
    fn quantiles_stay_in_their_bounds() {
        let log = Distribution::LogUniform {
            low: 0.1,
            high: 10.0,
        };
        assert_eq!(log.at(0.5), json!(1.0));
        assert_eq!(log.at(0.0), json!(0.1));
        let int = Distribution::IntUniform { low: 1, high: 3 };
        let seen: Vec<Value> = [0.0, 0.34, 0.67, 0.9999]
            .iter()
            .map(|u| int.at(*u))
            .collect();
        assert_eq!(seen, [json!(1), json!(2), json!(3), json!(3)]);
        let choice = Distribution::Choice(vec![json!("a"), json!(["b", "c"])]);
        assert_eq!(choice.at(0.99), json!(["b", "c"]));
        assert_eq!(float(0.123456789, 0.0, 1.0), json!(0.123457));
    }
}
