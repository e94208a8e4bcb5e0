//! A small tree-structured Parzen estimator (Bergstra et al., 2011), as hyperopt's default:
//! each param is modelled on its own.
//!
//! Given the finished trials (ordered by objective, equal values by key, then trial index), the
//! best ⌈γ·n⌉ (γ = 0.25) are "good" and the rest "bad". For a numeric param, each group is a
//! Parzen estimator: one Gaussian per observed value (in log space for `log_uniform`), its width
//! the larger gap to its neighbours (bounds included), kept between range/min(100, n + 1) and the
//! range, plus one wide prior Gaussian over the whole range. [`CANDIDATES`] candidates are drawn
//! from the good estimator l(x) and the one maximising l(x)/g(x) (the expected-improvement
//! ratio) is proposed. A `choice` param counts each option in both groups (plus one each, the
//! prior) and does the same with those frequencies. Draws come from [`super::space::Draws`]
//! seeded by (seed, trial, path), so a proposal is a function of the seed, the space and the
//! results it was given, nothing else. The estimators are not renormalised for truncation at the
//! bounds: both sides are equally truncated, which leaves the ratio's argmax nearly unchanged.
//!
//! Trials of one generation all see the same results; they differ by their draws.

use serde_json::Value;

use super::search::{SearchSpec, Trial, TrialResult};
use super::space::{float, Distribution, Draws};

/// The share of finished trials that counts as good.
pub const GAMMA: f64 = 0.25;
/// Candidates drawn from the good estimator per param.
pub const CANDIDATES: usize = 24;

/// Trial `i`'s values from the results of earlier generations.
pub fn propose(spec: &SearchSpec, i: usize, history: &[(Trial, TrialResult)]) -> Vec<Value> {
    let mut order: Vec<&(Trial, TrialResult)> = history.iter().collect();
    order.sort_by(|(ta, a), (tb, b)| {
        spec.goal
            .order((a.value, &a.key), (b.value, &b.key))
            .then(ta.index.cmp(&tb.index))
    });
    let n_good = ((GAMMA * order.len() as f64).ceil() as usize).clamp(1, order.len().max(1));
    let (good, bad) = order.split_at(n_good.min(order.len()));
    spec.params
        .iter()
        .enumerate()
        .map(|(p, param)| {
            let mut draws = Draws::new(spec.seed, i, &param.path, "tpe");
            let of = |set: &[&(Trial, TrialResult)]| -> Vec<Value> {
                set.iter().map(|(t, _)| t.values[p].clone()).collect()
            };
            match &param.distribution {
                Distribution::Choice(options) => choose(options, &of(good), &of(bad), &mut draws),
                numeric => numeric_proposal(numeric, &of(good), &of(bad), &mut draws),
            }
        })
        .collect()
}

/// The internal coordinate of a numeric distribution: its range and how values map into it.
struct Axis {
    low: f64,
    high: f64,
    log: bool,
}

impl Axis {
    fn of(d: &Distribution) -> Axis {
        match d {
            Distribution::Uniform { low, high } => Axis {
                low: *low,
                high: *high,
                log: false,
            },
            Distribution::LogUniform { low, high } => Axis {
                low: low.ln(),
                high: high.ln(),
                log: true,
            },
            Distribution::IntUniform { low, high } => Axis {
                low: *low as f64 - 0.5,
                high: *high as f64 + 0.5,
                log: false,
            },
            Distribution::Choice(_) => Axis {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        }
    }
    fn inward(&self, v: &Value) -> Option<f64> {
        let x = v.as_f64()?;
        Some(if self.log { x.ln() } else { x })
    }
}

/// Gaussians (mean, width) over observed points, the prior last. A point's width is the larger
/// gap to its neighbours among the points and the prior's mean (the bounds are no neighbours, so
/// a point near an edge is not smeared over the whole range), kept between range/min(100, n + 1)
/// and the range.
fn parzen(points: &[f64], axis: &Axis) -> Vec<(f64, f64)> {
    let range = axis.high - axis.low;
    let mid = (axis.low + axis.high) / 2.0;
    let mut sorted = points.to_vec();
    sorted.push(mid);
    sorted.sort_by(f64::total_cmp);
    let floor = range / (points.len() as f64 + 1.0).min(100.0);
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len() + 1);
    for &x in points {
        let k = sorted.partition_point(|v| *v < x);
        let left = k.checked_sub(1).map(|j| x - sorted[j]);
        let right = sorted[k + 1..].first().map(|r| r - x);
        let gap = left.into_iter().chain(right).fold(0.0, f64::max);
        out.push((x, gap.clamp(floor, range)));
    }
    out.push((mid, range));
    out
}

fn density(x: f64, mixture: &[(f64, f64)]) -> f64 {
    let sum: f64 = mixture
        .iter()
        .map(|(mu, s)| {
            let z = (x - mu) / s;
            (-0.5 * z * z).exp() / (s * (std::f64::consts::TAU).sqrt())
        })
        .sum();
    sum / mixture.len() as f64
}

fn numeric_proposal(d: &Distribution, good: &[Value], bad: &[Value], draws: &mut Draws) -> Value {
    let axis = Axis::of(d);
    let points = |vs: &[Value]| -> Vec<f64> { vs.iter().filter_map(|v| axis.inward(v)).collect() };
    let l = parzen(&points(good), &axis);
    let g = parzen(&points(bad), &axis);
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..CANDIDATES {
        let (mu, s) = l[(draws.next_unit() * l.len() as f64) as usize % l.len()];
        let mut x = None;
        for _ in 0..16 {
            let c = mu + s * draws.next_normal();
            if (axis.low..=axis.high).contains(&c) {
                x = Some(c);
                break;
            }
        }
        let x = x.unwrap_or_else(|| axis.low + draws.next_unit() * (axis.high - axis.low));
        let score = density(x, &l).ln() - density(x, &g).ln();
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((x, score));
        }
    }
    let x = best.map_or((axis.low + axis.high) / 2.0, |(x, _)| x);
    match d {
        Distribution::Uniform { low, high } => float(x, *low, *high),
        Distribution::LogUniform { low, high } => float(x.exp(), *low, *high),
        Distribution::IntUniform { low, high } => {
            Value::from((x.round() as i64).clamp(*low, *high))
        }
        Distribution::Choice(_) => Value::Null,
    }
}

fn choose(options: &[Value], good: &[Value], bad: &[Value], draws: &mut Draws) -> Value {
    let k = options.len() as f64;
    let freq = |set: &[Value], o: &Value| {
        (set.iter().filter(|v| *v == o).count() as f64 + 1.0) / (set.len() as f64 + k)
    };
    let l: Vec<f64> = options.iter().map(|o| freq(good, o)).collect();
    let ratio: Vec<f64> = options
        .iter()
        .zip(&l)
        .map(|(o, lo)| lo / freq(bad, o))
        .collect();
    let mut best: Option<usize> = None;
    for _ in 0..CANDIDATES {
        let mut u = draws.next_unit();
        let mut pick = options.len() - 1;
        for (i, p) in l.iter().enumerate() {
            if u < *p {
                pick = i;
                break;
            }
            u -= p;
        }
        if best.is_none_or(|b| ratio[pick] > ratio[b]) {
            best = Some(pick);
        }
    }
    options[best.unwrap_or(0)].clone()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::super::search::{propose as propose_generation, Goal, Objective, Strategy};
    use super::super::space::SearchParam;
    use super::*;
    use serde_json::json;

    fn spec(
        strategy: Strategy,
        distribution: Distribution,
        trials: usize,
        goal: Goal,
    ) -> SearchSpec {
        SearchSpec {
            strategy,
            strategy_span: 0..0,
            seed: 7,
            objective: Objective {
                stage: "q".into(),
                metric: "y".into(),
                span: 0..0,
            },
            goal,
            trials,
            trials_span: 0..0,
            parallel: 1,
            params: vec![SearchParam {
                path: "stage.q.x".into(),
                path_span: 0..0,
                span: 0..0,
                distribution,
            }],
            budget: None,
        }
    }

    /// Runs a whole search against `f`, generation by generation.
    fn simulate(spec: &SearchSpec, f: impl Fn(&Value) -> f64) -> Vec<(Trial, TrialResult)> {
        let mut history = Vec::new();
        for g in 0.. {
            let generation = propose_generation(spec, g, &history);
            if generation.trials.is_empty() {
                break;
            }
            for t in generation.trials {
                let value = f(&t.values[0]);
                let key = format!("{:04}", t.index);
                history.push((t, TrialResult { value, key }));
            }
        }
        history
    }

    /// The first trial whose value is within `tol` of the optimum (or the trial count).
    fn trials_to_reach(h: &[(Trial, TrialResult)], best: f64, tol: f64) -> usize {
        h.iter()
            .position(|(_, r)| (r.value - best).abs() <= tol)
            .map_or(h.len(), |i| i + 1)
    }

    #[test]
    fn tpe_finds_the_top_of_a_quadratic_in_fewer_trials_than_random() {
        let quadratic = |v: &Value| 1.0 - (v.as_f64().unwrap() - 0.73).powi(2);
        let d = Distribution::Uniform {
            low: -2.0,
            high: 3.0,
        };
        let tpe = simulate(&spec(Strategy::Tpe, d.clone(), 60, Goal::Max), quadratic);
        let random = simulate(&spec(Strategy::Random, d, 60, Goal::Max), quadratic);
        let (t, r) = (
            trials_to_reach(&tpe, 1.0, 1e-3),
            trials_to_reach(&random, 1.0, 1e-3),
        );
        assert!(
            t < r,
            "tpe reached the optimum after {t} trials, random after {r}"
        );
        let best =
            |h: &[(Trial, TrialResult)]| h.iter().map(|(_, r)| r.value).fold(f64::MIN, f64::max);
        let (bt, br) = (best(&tpe), best(&random));
        eprintln!("quadratic: tpe within 1e-3 after {t} trials, random after {r}; best of 60: tpe {bt}, random {br}");
        assert!(
            bt > br && bt > 1.0 - 1e-3,
            "best of 60: tpe {bt}, random {br}"
        );
        // The first trials (the random start-up) are random's own.
        assert_eq!(tpe[0].0.values, random[0].0.values);
    }

    #[test]
    fn tpe_settles_on_the_one_good_choice_and_minimises_too() {
        let options: Vec<Value> = (0..6).map(|i| json!(format!("c{i}"))).collect();
        let loss = |v: &Value| if v == &json!("c4") { 0.1 } else { 1.0 };
        let d = Distribution::Choice(options);
        let tpe = simulate(&spec(Strategy::Tpe, d.clone(), 30, Goal::Min), loss);
        let random = simulate(&spec(Strategy::Random, d, 30, Goal::Min), loss);
        let hits =
            |h: &[(Trial, TrialResult)]| h[10..].iter().filter(|(_, r)| r.value < 0.5).count();
        eprintln!(
            "choice: c4 chosen after start-up by tpe {} times of 20, random {}",
            hits(&tpe),
            hits(&random)
        );
        assert!(
            hits(&tpe) > 2 * hits(&random).max(1),
            "after start-up tpe chose c4 {} times of 20, random {}",
            hits(&tpe),
            hits(&random)
        );
    }

    #[test]
    fn log_and_integer_params_stay_in_range_and_are_typed() {
        let d = Distribution::LogUniform {
            low: 1e-4,
            high: 1e-1,
        };
        let h = simulate(&spec(Strategy::Tpe, d, 20, Goal::Max), |v| {
            -(v.as_f64().unwrap().log10() + 2.0).abs()
        });
        assert!(h
            .iter()
            .all(|(t, _)| (1e-4..=1e-1).contains(&t.values[0].as_f64().unwrap())));
        let d = Distribution::IntUniform { low: 1, high: 9 };
        let h = simulate(&spec(Strategy::Tpe, d, 20, Goal::Max), |v| {
            -((v.as_i64().unwrap() - 6) as f64).abs()
        });
        assert!(h.iter().all(|(t, _)| t.values[0].is_i64()));
        assert!(
            h[10..]
                .iter()
                .filter(|(t, _)| t.values[0] == json!(6))
                .count()
                >= 5
        );
    }
}
