//! Adaptive sweeps: `[sweep] strategy = "random" | "tpe" | "halving"`, read into a
//! [`SearchSpec`], and the generation driver every strategy shares.
//!
//! An adaptive sweep runs in *generations*: a generation's trials are proposed together, run
//! together (one batch, so a cluster is never idle waiting for a single trial), and their
//! objective values are read from the cache before the next generation is proposed. A proposal
//! is a pure function of (seed, space, the results of earlier generations ordered by trial
//! index): [`propose`] sees nothing else, so the order in which trials finished never matters,
//! and re-reading the same cache gives the same trial list. That is what makes a sweep resumable
//! without any state of its own: after Ctrl-C, re-running the file walks the generations again,
//! finds every finished trial in the cache, and continues with the first generation that has a
//! trial without a result.
//!
//! - `random` ([`random_values`]): trial *i*'s value of each param from a hash of (seed, *i*, path);
//!   generations of `parallel` trials (default: all of them at once).
//! - `tpe` ([`super::tpe`]): the first `max(parallel, 10)` trials are random (as Optuna's default), then each trial is
//!   proposed by a tree-structured Parzen estimator over all earlier generations' results
//!   (trials of one generation see each other as the worst result so far: a constant liar).
//! - `halving` ([`super::halving`]): `trials` random configurations at `budget.min`; each rung
//!   promotes the best 1/eta (by objective, then key) to eta times the budget, up to `budget.max`.

use std::ops::Range;

use serde_json::Value;

use super::space::{parse_distribution, SearchParam};
use crate::config::error::{suggestion, ConfigError};
use crate::config::raw::{RawField, RawSweep};

/// The adaptive strategies (`grid` and `zip` are [`super::SweepMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Random,
    Tpe,
    Halving,
}

/// Every `strategy` value, the lists' two included.
pub const STRATEGIES: &[&str] = &["grid", "zip", "random", "tpe", "halving"];

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Tpe => "tpe",
            Strategy::Halving => "halving",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Max,
    Min,
}

impl Goal {
    /// True when `a` is a better objective value than `b` (NaN is worse than anything).
    pub fn better(self, a: f64, b: f64) -> bool {
        match (a.is_nan(), b.is_nan()) {
            (true, _) => false,
            (false, true) => true,
            _ => match self {
                Goal::Max => a > b,
                Goal::Min => a < b,
            },
        }
    }

    /// Sorts `(value, key)` pairs best first; equal values by key.
    pub fn order(self, a: (f64, &str), b: (f64, &str)) -> std::cmp::Ordering {
        if self.better(a.0, b.0) {
            std::cmp::Ordering::Less
        } else if self.better(b.0, a.0) {
            std::cmp::Ordering::Greater
        } else {
            a.1.cmp(b.1)
        }
    }

    /// The comparison a stopped trial failed: `<` under `max`, `>` under `min`.
    pub fn worse_sign(self) -> &'static str {
        match self {
            Goal::Max => "<",
            Goal::Min => ">",
        }
    }
}

/// `objective = "vectors.probe_average_accuracy"`: a stage and a top-level number of its
/// `metrics.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub stage: String,
    pub metric: String,
    pub span: Range<usize>,
}

impl Objective {
    pub fn text(&self) -> String {
        format!("{}.{}", self.stage, self.metric)
    }
}

/// `budget = { param, min, max, eta }` (successive halving).
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub path: String,
    pub path_span: Range<usize>,
    pub min: u64,
    pub min_span: Range<usize>,
    pub max: u64,
    pub eta: u64,
}

impl Budget {
    /// Rung k's budget: min·eta^k, capped at max.
    pub fn at_rung(&self, rung: usize) -> u64 {
        let mut b = self.min;
        for _ in 0..rung {
            b = b.saturating_mul(self.eta);
            if b >= self.max {
                return self.max;
            }
        }
        b.min(self.max)
    }
}

/// An adaptive `[sweep]`, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    pub strategy: Strategy,
    pub strategy_span: Range<usize>,
    pub seed: u64,
    pub objective: Objective,
    pub goal: Goal,
    /// random/tpe: how many trials; halving: how many configurations at rung 0.
    pub trials: usize,
    pub trials_span: Range<usize>,
    /// Trials per generation (random/tpe).
    pub parallel: usize,
    pub params: Vec<SearchParam>,
    pub budget: Option<Budget>,
}

impl SearchSpec {
    /// How many variants the whole search can produce (for `--max-variants`).
    pub fn max_trials(&self) -> usize {
        match (&self.strategy, &self.budget) {
            (Strategy::Halving, Some(b)) => {
                let (mut n, mut total, mut rung) = (self.trials, 0usize, 0usize);
                while n > 0 {
                    total = total.saturating_add(n);
                    if b.at_rung(rung) >= b.max {
                        break;
                    }
                    n /= b.eta.max(2) as usize;
                    rung += 1;
                }
                total
            }
            _ => self.trials,
        }
    }

    /// Trials of random start-up before TPE proposes.
    pub fn startup(&self) -> usize {
        self.parallel.max(10)
    }
}

/// One proposed trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Position in the trial list (all generations).
    pub index: usize,
    pub generation: usize,
    /// halving: the rung; `None` elsewhere.
    pub rung: Option<usize>,
    /// One value per [`SearchSpec::params`].
    pub values: Vec<Value>,
    /// halving: the budget param's value.
    pub budget: Option<u64>,
    /// Where it came from, as a sentence fragment: "tpe generation 2, from trials 0–7".
    pub origin: String,
    /// halving: the configuration (its rung-0 trial) and the lower-rung trial it was promoted from.
    pub config: usize,
    pub promoted_from: Option<usize>,
}

impl Trial {
    /// `t003`, or `t012-r1` for a halving rung above 0.
    pub fn name(&self) -> String {
        match self.rung {
            Some(r) if r > 0 => format!("t{:03}-r{r}", self.index),
            _ => format!("t{:03}", self.index),
        }
    }
}

/// A finished trial's objective value and the key of the stage that wrote it (the tie-break).
#[derive(Debug, Clone, PartialEq)]
pub struct TrialResult {
    pub value: f64,
    pub key: String,
}

/// What the next generation is, given every earlier one with its results.
#[derive(Debug, Default)]
pub struct Generation {
    /// Empty when the search is over.
    pub trials: Vec<Trial>,
    /// Earlier trials that this generation stopped, with why ("rung 1: … < cutoff …").
    pub stopped: Vec<(usize, String)>,
}

/// Proposes generation `g`. `history` holds every trial of generations `< g` with its result,
/// in trial-index order.
pub fn propose(spec: &SearchSpec, g: usize, history: &[(Trial, TrialResult)]) -> Generation {
    match spec.strategy {
        Strategy::Random | Strategy::Tpe => {
            let start = g.saturating_mul(spec.parallel);
            let end = (start + spec.parallel).min(spec.trials);
            // TPE's "constant liar": within a generation, each trial sees the ones proposed
            // before it as finished with the worst result so far, so a generation spreads out
            // instead of proposing the same point `parallel` times.
            let worst = history.iter().map(|(_, r)| r.value).reduce(|a, b| {
                if spec.goal.better(a, b) {
                    b
                } else {
                    a
                }
            });
            let mut seen: Vec<(Trial, TrialResult)> = history.to_vec();
            let mut trials = Vec::new();
            for i in start..end {
                let (values, origin) = if spec.strategy == Strategy::Random || i < spec.startup() {
                    let origin = match spec.strategy {
                        Strategy::Random => format!("random trial {i}"),
                        _ => format!("tpe generation {g}, random start-up"),
                    };
                    (random_values(spec, i), origin)
                } else {
                    let last = history.len().saturating_sub(1);
                    (
                        super::tpe::propose(spec, i, &seen),
                        format!("tpe generation {g}, from trials 0–{last}"),
                    )
                };
                let trial = Trial {
                    index: i,
                    generation: g,
                    rung: None,
                    values,
                    budget: None,
                    origin,
                    config: i,
                    promoted_from: None,
                };
                if let Some(value) = worst {
                    let liar = TrialResult {
                        value,
                        key: String::new(),
                    };
                    seen.push((trial.clone(), liar));
                }
                trials.push(trial);
            }
            Generation {
                trials,
                stopped: Vec::new(),
            }
        }
        Strategy::Halving => super::halving::propose(spec, g, history),
    }
}

/// Trial `i`'s random values: each param's quantile at a hash of (seed, i, path).
pub fn random_values(spec: &SearchSpec, i: usize) -> Vec<Value> {
    spec.params
        .iter()
        .map(|p| {
            p.distribution
                .at(super::space::unit(spec.seed, i, &p.path, "random"))
        })
        .collect()
}

/// A value as the stop reasons print it: `0.7123`, `1.5e-5`.
pub fn short_number(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Reads the adaptive keys of `[sweep]`. `None` when the strategy is `grid`/`zip` (or absent);
/// `Some(Err)` after pushing errors. `stage_names` are the experiment's, for did-you-mean.
pub fn parse_spec(
    raw: &RawSweep,
    stage_names: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<Result<SearchSpec, ()>> {
    let field = |name: &str| raw.settings.iter().find(|f| f.name == name);
    let before = errors.len();
    let strategy_field = field("strategy");
    let strategy = match strategy_field.map(|f| (f, f.value.as_str())) {
        None => None,
        Some((f, Some("grid" | "zip"))) => {
            if raw.mode.is_some() {
                errors.push(
                    ConfigError::at(f.span.clone(), "`[sweep]` has both `strategy` and `mode`")
                        .with_help("keep one: `strategy = \"grid\"` means `mode = \"grid\"`"),
                );
            }
            None
        }
        Some((_, Some("random"))) => Some(Strategy::Random),
        Some((_, Some("tpe"))) => Some(Strategy::Tpe),
        Some((_, Some("halving"))) => Some(Strategy::Halving),
        Some((f, other)) => {
            let shown = other.map_or_else(|| f.value.to_string(), str::to_owned);
            errors.push(
                ConfigError::at(f.span.clone(), format!("unknown sweep strategy `{shown}`"))
                    .with_help_opt(suggestion(&shown, STRATEGIES, "strategies")),
            );
            return Some(Err(()));
        }
    };
    let Some(strategy) = strategy else {
        for f in &raw.settings {
            if f.name != "strategy" {
                errors.push(
                    ConfigError::at(
                        f.key_span.clone(),
                        format!("`{}` only applies to an adaptive sweep", f.name),
                    )
                    .with_help("add `strategy = \"random\"`, `\"tpe\"` or `\"halving\"`"),
                );
            }
        }
        if let Some(span) = &raw.space_span {
            errors.push(
                ConfigError::at(span.clone(), "`space` only applies to an adaptive sweep")
                    .with_help("add `strategy = \"random\"`, `\"tpe\"` or `\"halving\"`"),
            );
        }
        return (errors.len() > before).then_some(Err(()));
    };
    let strategy_span = strategy_field.map(|f| f.span.clone()).unwrap_or_default();
    let table_span = raw.span.clone();

    let int = |f: &RawField, min: u64, errors: &mut Vec<ConfigError>| -> Option<u64> {
        match f.value.as_u64() {
            Some(n) if n >= min => Some(n),
            _ => {
                errors.push(ConfigError::at(
                    f.span.clone(),
                    format!("`{}` must be an integer ≥ {min}, found {}", f.name, f.value),
                ));
                None
            }
        }
    };
    let seed = field("seed").and_then(|f| int(f, 0, errors)).unwrap_or(0);
    let trials_field = field("trials");
    let trials = match trials_field {
        Some(f) => int(f, 1, errors).unwrap_or(1) as usize,
        None => {
            errors.push(
                ConfigError::at(
                    table_span.clone(),
                    format!("a `{}` sweep needs `trials`", strategy.as_str()),
                )
                .with_help("add `trials = 16` to `[sweep]`"),
            );
            1
        }
    };
    let trials_span = trials_field
        .map(|f| f.span.clone())
        .unwrap_or(table_span.clone());
    let parallel = match field("parallel") {
        Some(f) => int(f, 1, errors).unwrap_or(1) as usize,
        None if strategy == Strategy::Tpe => 4,
        None => trials,
    };
    let goal = match field("goal") {
        None => Goal::Max,
        Some(f) => match f.value.as_str() {
            Some("max") => Goal::Max,
            Some("min") => Goal::Min,
            other => {
                let shown = other.map_or_else(|| f.value.to_string(), str::to_owned);
                errors.push(
                    ConfigError::at(f.span.clone(), format!("unknown goal `{shown}`"))
                        .with_help_opt(suggestion(&shown, &["max", "min"], "goals")),
                );
                Goal::Max
            }
        },
    };
    let objective = match field("objective") {
        None => {
            errors.push(
                ConfigError::at(table_span.clone(), format!("a `{}` sweep needs an `objective`", strategy.as_str()))
                    .with_help("add `objective = \"<stage>.<metric>\"`, a number the stage writes to its metrics.json"),
            );
            None
        }
        Some(f) => match f.value.as_str().and_then(|s| s.split_once('.')) {
            Some((stage, metric)) if !metric.is_empty() && !metric.contains('.') => {
                if !stage_names.contains(&stage) {
                    errors.push(
                        ConfigError::at(
                            f.span.clone(),
                            format!("`objective` names unknown stage `{stage}`"),
                        )
                        .with_help_opt(suggestion(
                            stage,
                            stage_names,
                            "stages",
                        )),
                    );
                }
                Some(Objective {
                    stage: stage.to_owned(),
                    metric: metric.to_owned(),
                    span: f.span.clone(),
                })
            }
            _ => {
                errors.push(
                    ConfigError::at(
                        f.span.clone(),
                        format!(
                            "`objective` must be `\"<stage>.<metric>\"`, found {}",
                            f.value
                        ),
                    )
                    .with_help("for example `objective = \"vectors.probe_average_accuracy\"`"),
                );
                None
            }
        },
    };
    let mut params = Vec::new();
    for d in &raw.space {
        if let Some(p) = parse_distribution(d, errors) {
            params.push(p);
        }
    }
    if raw.space.is_empty() {
        let span = raw.space_span.clone().unwrap_or(table_span.clone());
        errors.push(
            ConfigError::at(
                span,
                format!("a `{}` sweep needs a non-empty `space`", strategy.as_str()),
            )
            .with_help("add `space.\"stage.train.alfa\" = { log_uniform = [0.1, 10.0] }`"),
        );
    }
    for axis in &raw.axes {
        errors.push(
            ConfigError::at(
                axis.path_span.clone(),
                format!(
                    "a `{}` sweep searches `space`, not value lists",
                    strategy.as_str()
                ),
            )
            .with_help(format!(
                "move it into the space: `space.\"{}\" = {{ choice = [...] }}`",
                axis.path
            )),
        );
    }
    let budget = match (&raw.budget, strategy) {
        (Some((span, fields)), Strategy::Halving) => parse_budget(span, fields, errors),
        (Some((span, _)), _) => {
            errors.push(ConfigError::at(
                span.clone(),
                format!(
                    "`budget` only applies to `strategy = \"halving\"`, not `{}`",
                    strategy.as_str()
                ),
            ));
            None
        }
        (None, Strategy::Halving) => {
            errors.push(
                ConfigError::at(table_span.clone(), "a `halving` sweep needs a `budget`")
                    .with_help("add `budget = { param = \"stage.train.max_steps\", min = 400, max = 6400, eta = 3 }`"),
            );
            None
        }
        (None, _) => None,
    };
    if let Some(b) = &budget {
        if let Some(p) = params.iter().find(|p| p.path == b.path) {
            errors.push(ConfigError::at(
                p.path_span.clone(),
                format!(
                    "`{}` is the halving budget; it cannot be searched too",
                    p.path
                ),
            ));
        }
    }
    if errors.len() > before {
        return Some(Err(()));
    }
    let objective = objective?;
    Some(Ok(SearchSpec {
        strategy,
        strategy_span,
        seed,
        objective,
        goal,
        trials,
        trials_span,
        parallel,
        params,
        budget,
    }))
}

fn parse_budget(
    span: &Range<usize>,
    fields: &[RawField],
    errors: &mut Vec<ConfigError>,
) -> Option<Budget> {
    const KEYS: &[&str] = &["param", "min", "max", "eta"];
    let before = errors.len();
    for f in fields {
        if !KEYS.contains(&f.name.as_str()) {
            errors.push(
                ConfigError::at(
                    f.key_span.clone(),
                    format!("unknown key `{}` in `budget`", f.name),
                )
                .with_help_opt(suggestion(&f.name, KEYS, "keys")),
            );
        }
    }
    let get = |name: &str, errors: &mut Vec<ConfigError>| {
        let f = fields.iter().find(|f| f.name == name);
        if f.is_none() {
            errors.push(
                ConfigError::at(span.clone(), format!("`budget` needs `{name}`"))
                    .with_help("write `budget = { param = \"stage.train.max_steps\", min = 400, max = 6400, eta = 3 }`"),
            );
        }
        f
    };
    let positive = |f: &RawField, min: u64, errors: &mut Vec<ConfigError>| match f.value.as_u64() {
        Some(n) if n >= min => Some(n),
        _ => {
            errors.push(
                ConfigError::at(
                    f.span.clone(),
                    format!(
                        "`{}` of `budget` must be an integer ≥ {min}, found {}",
                        f.name, f.value
                    ),
                )
                .with_help(if f.name == "eta" {
                    "eta is the promotion factor: 2 keeps half of each rung, 3 a third"
                } else {
                    "the budget is an integer param such as `max_steps`"
                }),
            );
            None
        }
    };
    let param = get("param", errors).and_then(|f| match f.value.as_str() {
        Some(p) => Some((p.to_owned(), f.span.clone())),
        None => {
            errors.push(ConfigError::at(
                f.span.clone(),
                format!(
                    "`param` of `budget` must be a param path string, found {}",
                    f.value
                ),
            ));
            None
        }
    });
    let min_f = get("min", errors);
    let min = min_f.and_then(|f| positive(f, 1, errors));
    let max = get("max", errors).and_then(|f| positive(f, 1, errors));
    let eta = get("eta", errors).and_then(|f| positive(f, 2, errors));
    if let (Some(lo), Some(hi), Some(f)) = (min, max, fields.iter().find(|f| f.name == "max")) {
        if hi < lo {
            errors.push(ConfigError::at(
                f.span.clone(),
                format!("`max` of `budget` ({hi}) is below `min` ({lo})"),
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    let (path, path_span) = param?;
    Some(Budget {
        path,
        path_span,
        min: min?,
        min_span: min_f?.span.clone(),
        max: max?,
        eta: eta?,
    })
}
