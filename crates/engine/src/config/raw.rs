//! The raw layer: the experiment file's TOML, mirrored with spans and nothing resolved.
//!
//! Only this module sees TOML syntax. It splits the document into the `[experiment]` header,
//! `[input.<name>]` tables and `[stage.<name>]` tables, and for each stage separates the
//! reserved keys (`kind`, `from`) from the rest, which stays a spanned TOML table until
//! `resolve` hands it to the kind's `Params` deserializer. Stage tables are split by hand, not
//! with `#[serde(flatten)]`, because flatten silently disables `deny_unknown_fields`.
//! `[sweep]` becomes a [`RawSweep`]: each swept path with its list of values, each value with its
//! own span, so `resolve`/`sweep` can type-check every value and point at the bad one.
//! `[executor]` becomes a [`RawExecutor`] (where stages run: `local` or `slurm`, and the Slurm
//! job settings), every value with its span; `resolve` checks kinds and resource names.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{suggestion, ConfigError};

pub use crate::cache::FingerprintMode;

/// `[experiment]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    /// Names `runs/<name>/`; default: the file stem.
    pub name: Option<Spanned<String>>,
    /// Goes into every stage's key; default 0.
    pub seed: Option<Spanned<u64>>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`; never in a key.
    pub device: Option<Spanned<String>>,
    /// Cache directory, relative to the experiment file's directory.
    pub cache: Option<Spanned<String>>,
    /// `false`: never continue a lower-budget entry (`cache::family`); default true. Never in a key.
    pub warm_start: Option<Spanned<bool>>,
}

/// `[cache]`: the shared remote cache (`cache::remote`). Never part of a key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// `s3://bucket/prefix`.
    pub remote: Option<Spanned<String>>,
    /// Whether runs push what they compute (default false: read-only).
    pub push: Option<Spanned<bool>>,
}

/// `[input.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInputTable {
    /// A directory or a file; `~` is expanded, relative paths start at the experiment's directory.
    pub path: Spanned<String>,
    #[serde(default)]
    pub fingerprint: Option<Spanned<FingerprintMode>>,
    /// What to tell a user whose machine lacks the path (where to get the data, what to run
    /// instead); shown as the `help:` of the missing-input error.
    #[serde(default)]
    pub hint: Option<String>,
}

#[derive(Debug)]
pub struct RawInput {
    pub name: String,
    pub name_span: Range<usize>,
    pub table: RawInputTable,
}

/// One `from.<role> = "<name>[/subpath]"` entry.
#[derive(Debug, Clone)]
pub struct RawFrom {
    pub role: String,
    pub role_span: Range<usize>,
    pub target: String,
    pub target_span: Range<usize>,
}

/// `[stage.<name>]`, split into reserved keys and the kind's params.
#[derive(Debug)]
pub struct RawStage<'s> {
    pub name: String,
    pub name_span: Range<usize>,
    pub kind: Option<Spanned<String>>,
    pub from: Vec<RawFrom>,
    /// The stage table minus `kind` and `from`, with the stage table's span.
    pub params: Spanned<DeValue<'s>>,
}

/// One swept param: `"stage.train.alfa" = [0.5, 1.0]` (or the same as nested dotted keys).
#[derive(Debug, Clone)]
pub struct RawAxis {
    /// Dotted: `stage.<stage>.<param...>` or `experiment.seed`.
    pub path: String,
    pub path_span: Range<usize>,
    /// Each value as JSON (what `--set` values become too), with its span.
    pub values: Vec<(serde_json::Value, Range<usize>)>,
    pub list_span: Range<usize>,
}

/// `[sweep]`: the swept params in file order, plus the reserved keys `mode` and `metrics`.
#[derive(Debug, Clone, Default)]
pub struct RawSweep {
    /// The `sweep` key's span.
    pub span: Range<usize>,
    /// `"grid"` (default) or `"zip"`.
    pub mode: Option<Spanned<String>>,
    /// Which `metrics.json` fields `sweep.csv` shows (default: the conventional set).
    pub metrics: Option<Spanned<Vec<String>>>,
    pub axes: Vec<RawAxis>,
    /// The adaptive-search keys (`strategy`, `seed`, `objective`, `goal`, `trials`, `parallel`),
    /// as JSON with their spans; `config::sweep::search` types them.
    pub settings: Vec<RawField>,
    /// `space."stage.train.alfa" = { log_uniform = [0.1, 10.0] }`, in file order.
    pub space: Vec<RawDistribution>,
    /// The span of the `space` key, when given (an empty space is an error there).
    pub space_span: Option<Range<usize>>,
    /// `budget = { param = "...", min = 400, max = 6400, eta = 3 }`: its span and fields.
    pub budget: Option<(Range<usize>, Vec<RawField>)>,
}

/// A `key = value` of a search table, the value as JSON.
#[derive(Debug, Clone)]
pub struct RawField {
    pub name: String,
    pub key_span: Range<usize>,
    pub value: serde_json::Value,
    pub span: Range<usize>,
}

/// One searched param: its dotted path and the fields of its distribution table.
#[derive(Debug, Clone)]
pub struct RawDistribution {
    pub path: String,
    pub path_span: Range<usize>,
    /// The distribution table's span.
    pub span: Range<usize>,
    pub fields: Vec<RawField>,
}

/// `[executor]`: where dirty stages run. Never part of a key.
#[derive(Debug, Clone, Default)]
pub struct RawExecutor {
    /// `"local"` (default) or `"slurm"`.
    pub kind: Option<Spanned<String>>,
    /// `sbatch --partition`.
    pub partition: Option<Spanned<String>>,
    /// `sbatch --account`.
    pub account: Option<Spanned<String>>,
    /// `sbatch --time` (`MM`, `HH:MM:SS`, `D-HH:MM`...).
    pub time: Option<Spanned<String>>,
    /// Extra `sbatch` arguments for every job (`["--qos=long"]`).
    pub extra: Vec<Spanned<String>>,
    /// `[executor.resources.<kind>]`: extra `sbatch` options for that kind's jobs, in file order.
    pub resources: Vec<RawResources>,
}

/// `[executor.resources.<kind>]`: `gres = "gpu:1"`, `cpus-per-task = 4`, `exclusive = true`.
#[derive(Debug, Clone)]
pub struct RawResources {
    pub kind: String,
    pub kind_span: Range<usize>,
    /// Option name (without `--`), its span, its value as text (`None` for a bare flag: `true`).
    pub options: Vec<(String, Range<usize>, Option<String>)>,
}

#[derive(Debug, Default)]
pub struct RawExperiment<'s> {
    pub header: RawHeader,
    pub inputs: Vec<RawInput>,
    pub stages: Vec<RawStage<'s>>,
    pub sweep: Option<RawSweep>,
    pub executor: Option<RawExecutor>,
    pub cache: RawCache,
}

const TOP_LEVEL: &[&str] = &["experiment", "input", "stage", "sweep", "executor", "cache"];
/// The keys of `[executor]`.
pub const EXECUTOR_KEYS: &[&str] = &["kind", "partition", "account", "time", "extra", "resources"];
/// The keys of `[sweep]` that are not swept params.
pub const SWEEP_RESERVED: &[&str] = &[
    "mode",
    "metrics",
    "strategy",
    "seed",
    "objective",
    "goal",
    "trials",
    "parallel",
    "space",
    "budget",
];

/// Turns a serde/toml error into a `ConfigError`, with a did-you-mean for unknown fields and
/// variants. `noun` names what the table's keys are ("key", "param"); `context` names the table
/// ("`[experiment]`", "stage `train` (kind `train-vae`)").
pub(crate) fn from_toml_error(
    e: &toml::de::Error,
    fallback: Range<usize>,
    noun: &str,
    context: &str,
    key: Option<&str>,
) -> ConfigError {
    let span = e.span().unwrap_or(fallback);
    serde_message_to_error(e.message(), noun, context, key).into_error_at(span)
}

/// A serde message reworded, plus the help line it suggests.
pub(crate) struct Reworded {
    pub message: String,
    pub help: Option<String>,
}

impl Reworded {
    pub fn into_error_at(self, span: Range<usize>) -> ConfigError {
        ConfigError::at(span, self.message).with_help_opt(self.help)
    }
}

/// `key` is the key whose value failed, when known.
pub(crate) fn serde_message_to_error(
    message: &str,
    noun: &str,
    context: &str,
    key: Option<&str>,
) -> Reworded {
    let backticked = |rest: &str| -> (String, Vec<String>) {
        let name = rest.split('`').next().unwrap_or("").to_owned();
        let candidates = match rest.split_once("expected") {
            Some((_, list)) => list
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        };
        (name, candidates)
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, candidates) = backticked(rest);
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let help = if candidates.is_empty() {
            Some(format!("{context} takes no {noun}s"))
        } else {
            suggestion(&name, &candidates, &format!("{noun}s"))
        };
        return Reworded {
            message: format!("unknown {noun} `{name}` in {context}"),
            help,
        };
    }
    let of_key = key.map(|k| format!("`{k}` in ")).unwrap_or_default();
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (name, candidates) = backticked(rest);
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        return Reworded {
            message: format!("unknown value `{name}` for {of_key}{context}"),
            help: suggestion(&name, &candidates, "values"),
        };
    }
    if let Some(field) = message.strip_prefix("missing field `") {
        let name = field.split('`').next().unwrap_or("");
        return Reworded {
            message: format!("missing required {noun} `{name}` in {context}"),
            help: Some(format!("add `{name} = ...`")),
        };
    }
    Reworded {
        message: format!("{of_key}{context}: {message}"),
        help: None,
    }
}

/// The top-level key of `table` whose key or value span contains `span`.
pub(crate) fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let inside = |r: Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        (inside(k.span()) || inside(v.span())).then(|| k.get_ref().to_string())
    })
}

fn table_of<'a, 's>(v: &'a Spanned<DeValue<'s>>) -> Option<&'a DeTable<'s>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

/// Parses the document. Syntax errors stop here (all of them are returned); structural errors
/// are collected and parsing continues so the user sees every problem in one pass.
pub fn parse(text: &str) -> (RawExperiment<'_>, Vec<ConfigError>) {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let errors = syntax
            .iter()
            .map(|e| {
                ConfigError::at(
                    e.span().unwrap_or(0..0),
                    format!("invalid TOML: {}", e.message()),
                )
            })
            .collect();
        return (RawExperiment::default(), errors);
    }
    let mut errors = Vec::new();
    let mut raw = RawExperiment::default();
    let root_span = root.span();
    let root = root.into_inner();
    for (key, value) in root {
        let name: &str = key.get_ref();
        match name {
            "experiment" => {
                let span = value.span();
                match RawHeader::deserialize(toml::de::ValueDeserializer::from(value)) {
                    Ok(h) => raw.header = h,
                    Err(e) => errors.push(from_toml_error(&e, span, "key", "`[experiment]`", None)),
                }
            }
            "input" => parse_inputs(value, &mut raw, &mut errors),
            "stage" => parse_stages(value, &mut raw, &mut errors),
            "sweep" => raw.sweep = parse_sweep(key.span(), value, &mut errors),
            "executor" => raw.executor = parse_executor(value, &mut errors),
            "cache" => {
                let span = value.span();
                match RawCache::deserialize(toml::de::ValueDeserializer::from(value)) {
                    Ok(c) => raw.cache = c,
                    Err(e) => errors.push(from_toml_error(&e, span, "key", "`[cache]`", None)),
                }
            }
            other => errors.push(
                ConfigError::at(key.span(), format!("unknown top-level table `{other}`"))
                    .with_help_opt(suggestion(other, TOP_LEVEL, "tables")),
            ),
        }
    }
    let _ = root_span;
    raw.stages.sort_by_key(|s| s.name_span.start);
    raw.inputs.sort_by_key(|s| s.name_span.start);
    (raw, errors)
}

fn parse_sweep(
    key_span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<RawSweep> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(
            ConfigError::at(span, "`sweep` must be a table of swept params")
                .with_help("write `[sweep]` with lines like `\"stage.train.alfa\" = [0.5, 1.0]`"),
        );
        return None;
    };
    let mut sweep = RawSweep {
        span: key_span,
        ..RawSweep::default()
    };
    for (key, v) in table {
        let name: &str = key.get_ref();
        match name {
            "mode" => match v.get_ref() {
                DeValue::String(m) => sweep.mode = Some(Spanned::new(v.span(), m.to_string())),
                other => errors.push(
                    ConfigError::at(
                        v.span(),
                        format!(
                            "`mode` of `[sweep]` must be a string, found {}",
                            other.type_str()
                        ),
                    )
                    .with_help("write `mode = \"grid\"` (every combination) or `mode = \"zip\"`"),
                ),
            },
            "metrics" => {
                let list = match v.get_ref() {
                    DeValue::Array(items) => items
                        .iter()
                        .map(|i| match i.get_ref() {
                            DeValue::String(s) => Some(s.to_string()),
                            _ => None,
                        })
                        .collect::<Option<Vec<String>>>(),
                    _ => None,
                };
                match list {
                    Some(list) => sweep.metrics = Some(Spanned::new(v.span(), list)),
                    None => errors.push(
                        ConfigError::at(
                            v.span(),
                            "`metrics` of `[sweep]` must be a list of strings",
                        )
                        .with_help("write `metrics = [\"final_total_loss\", \"share_rising\"]`"),
                    ),
                }
            }
            "strategy" | "seed" | "objective" | "goal" | "trials" | "parallel" => {
                if let Some(field) = field_of(name, key.span(), v, errors) {
                    sweep.settings.push(field);
                }
            }
            "space" => {
                sweep.space_span = Some(key.span());
                collect_space(String::new(), key.span(), v, &mut sweep.space, errors);
            }
            "budget" => {
                let span = v.span();
                match v.into_inner() {
                    DeValue::Table(t) => {
                        let fields = t
                            .into_iter()
                            .filter_map(|(k, v)| field_of(k.get_ref(), k.span(), v, errors))
                            .collect();
                        sweep.budget = Some((span, fields));
                    }
                    other => errors.push(
                        ConfigError::at(
                            span,
                            format!("`budget` of `[sweep]` must be a table, found {}", other.type_str()),
                        )
                        .with_help("write `budget = { param = \"stage.train.max_steps\", min = 400, max = 6400, eta = 3 }`"),
                    ),
                }
            }
            _ if !name.contains('.')
                && !matches!(v.get_ref(), DeValue::Array(_) | DeValue::Table(_))
                && super::error::did_you_mean(name, SWEEP_RESERVED.iter().copied()).is_some() =>
            {
                errors.push(
                    ConfigError::at(key.span(), format!("unknown key `{name}` in `[sweep]`"))
                        .with_help_opt(suggestion(name, SWEEP_RESERVED, "keys")),
                );
            }
            _ => collect_axes(name.to_owned(), key.span(), v, &mut sweep.axes, errors),
        }
    }
    sweep.axes.sort_by_key(|a| a.path_span.start);
    sweep.space.sort_by_key(|d| d.path_span.start);
    Some(sweep)
}

/// `[executor]`, by hand (like the stage tables) so every value keeps its span.
fn parse_executor(
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<RawExecutor> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(
            ConfigError::at(span, "`executor` must be a table")
                .with_help("write `[executor]` with `kind = \"slurm\"` (or `\"local\"`)"),
        );
        return None;
    };
    let mut exec = RawExecutor::default();
    let string =
        |k: &str, v: &Spanned<DeValue<'_>>, errors: &mut Vec<ConfigError>| match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            other => {
                errors.push(
                    ConfigError::at(
                        v.span(),
                        format!(
                            "`{k}` of `[executor]` must be a string, found {}",
                            other.type_str()
                        ),
                    )
                    .with_help(format!("write `{k} = \"...\"`")),
                );
                None
            }
        };
    for (key, v) in table {
        let name: &str = key.get_ref();
        match name {
            "kind" => exec.kind = string(name, &v, errors),
            "partition" => exec.partition = string(name, &v, errors),
            "account" => exec.account = string(name, &v, errors),
            "time" => exec.time = string(name, &v, errors),
            "extra" => match v.get_ref() {
                DeValue::Array(items) => {
                    for item in items {
                        if let Some(s) = string("extra", item, errors) {
                            exec.extra.push(s);
                        }
                    }
                }
                other => errors.push(
                    ConfigError::at(
                        v.span(),
                        format!(
                            "`extra` of `[executor]` must be a list of strings, found {}",
                            other.type_str()
                        ),
                    )
                    .with_help("write `extra = [\"--qos=long\"]`"),
                ),
            },
            "resources" => match v.get_ref() {
                DeValue::Table(kinds) => {
                    for (kind, opts) in kinds {
                        let DeValue::Table(opts_table) = opts.get_ref() else {
                            errors.push(
                                ConfigError::at(
                                    opts.span(),
                                    format!(
                                        "`resources.{}` of `[executor]` must be a table of sbatch options",
                                        kind.get_ref()
                                    ),
                                )
                                .with_help(format!(
                                    "write `[executor.resources.{}]` with lines like `gres = \"gpu:1\"`",
                                    kind.get_ref()
                                )),
                            );
                            continue;
                        };
                        let mut options = Vec::new();
                        for (opt, val) in opts_table {
                            let text = match val.get_ref() {
                                DeValue::String(s) => Some(Some(s.to_string())),
                                DeValue::Integer(i) => Some(Some(i.to_string())),
                                DeValue::Boolean(true) => Some(None),
                                _ => None,
                            };
                            match text {
                                Some(text) => {
                                    options.push((opt.get_ref().to_string(), opt.span(), text))
                                }
                                None => errors.push(
                                    ConfigError::at(
                                        val.span(),
                                        format!(
                                            "sbatch option `{}` for kind `{}` must be a string, an integer or `true`, found {}",
                                            opt.get_ref(),
                                            kind.get_ref(),
                                            val.get_ref().type_str()
                                        ),
                                    )
                                    .with_help(format!(
                                        "write `{} = \"...\"` (it becomes `--{}=...`)",
                                        opt.get_ref(),
                                        opt.get_ref()
                                    )),
                                ),
                            }
                        }
                        options.sort_by_key(|o| o.1.start);
                        exec.resources.push(RawResources {
                            kind: kind.get_ref().to_string(),
                            kind_span: kind.span(),
                            options,
                        });
                    }
                }
                other => errors.push(
                    ConfigError::at(
                        v.span(),
                        format!(
                            "`resources` of `[executor]` must be a table, found {}",
                            other.type_str()
                        ),
                    )
                    .with_help("write `[executor.resources.<kind>]` with `gres = \"gpu:1\"`"),
                ),
            },
            other => errors.push(
                ConfigError::at(key.span(), format!("unknown key `{other}` in `[executor]`"))
                    .with_help_opt(suggestion(other, EXECUTOR_KEYS, "keys")),
            ),
        }
    }
    exec.resources.sort_by_key(|r| r.kind_span.start);
    Some(exec)
}

/// A search-table value as JSON with its spans.
fn field_of(
    name: &str,
    key_span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<RawField> {
    let span = value.span();
    match serde_json::Value::deserialize(toml::de::ValueDeserializer::from(value)) {
        Ok(v) => Some(RawField {
            name: name.to_owned(),
            key_span,
            value: v,
            span,
        }),
        Err(e) => {
            errors.push(ConfigError::at(
                span,
                format!("`{name}` in `[sweep]`: {}", e.message()),
            ));
            None
        }
    }
}

/// `space`'s entries: dotted-key tables down to a table whose values are not all tables (the
/// distribution, `{ uniform = [0, 1] }`).
fn collect_space(
    path: String,
    key_span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    out: &mut Vec<RawDistribution>,
    errors: &mut Vec<ConfigError>,
) {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(t) if !path.is_empty() && !t.iter().all(|(_, v)| table_of(v).is_some()) => {
            let fields = t
                .into_iter()
                .filter_map(|(k, v)| field_of(k.get_ref(), k.span(), v, errors))
                .collect();
            out.push(RawDistribution {
                path,
                path_span: key_span,
                span,
                fields,
            });
        }
        DeValue::Table(t) => {
            for (k, v) in t {
                let sub = if path.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{path}.{}", k.get_ref())
                };
                collect_space(sub, k.span(), v, out, errors);
            }
        }
        other => errors.push(
            ConfigError::at(
                span,
                format!(
                    "{} must be a distribution table, found {}",
                    if path.is_empty() { "`space` of `[sweep]`".to_owned() } else { format!("`space.\"{path}\"`") },
                    other.type_str()
                ),
            )
            .with_help("write `space.\"stage.train.alfa\" = { log_uniform = [0.1, 10.0] }` (or `uniform`, `int_uniform`, `choice`)"),
        ),
    }
}

/// A swept path is a key whose value is a list; tables in between are dotted-key segments.
fn collect_axes(
    path: String,
    key_span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    axes: &mut Vec<RawAxis>,
    errors: &mut Vec<ConfigError>,
) {
    let list_span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => {
            let mut values = Vec::new();
            for item in items {
                let span = item.span();
                match serde_json::Value::deserialize(toml::de::ValueDeserializer::from(item)) {
                    Ok(v) => values.push((v, span)),
                    Err(e) => errors.push(ConfigError::at(
                        span,
                        format!("value of `{path}` in `[sweep]`: {}", e.message()),
                    )),
                }
            }
            axes.push(RawAxis {
                path,
                path_span: key_span,
                values,
                list_span,
            });
        }
        DeValue::Table(t) => {
            for (k, v) in t {
                collect_axes(format!("{path}.{}", k.get_ref()), k.span(), v, axes, errors);
            }
        }
        other => errors.push(
            ConfigError::at(
                list_span,
                format!(
                    "swept param `{path}` must be a list of values, found {}",
                    other.type_str()
                ),
            )
            .with_help(format!(
                "write `\"{path}\" = [a, b]`; to fix one value use the stage table or `--set`"
            )),
        ),
    }
}

fn parse_inputs(
    value: Spanned<DeValue<'_>>,
    raw: &mut RawExperiment<'_>,
    errors: &mut Vec<ConfigError>,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(
            ConfigError::at(span, "`input` must be a table of inputs")
                .with_help("write `[input.<name>]` with a `path = \"...\"` key"),
        );
        return;
    };
    for (name, def) in table {
        let def_span = def.span();
        if !matches!(def.get_ref(), DeValue::Table(_)) {
            errors.push(
                ConfigError::at(
                    def_span,
                    format!("input `{}` must be a table", name.get_ref()),
                )
                .with_help(format!(
                    "write `[input.{}]` with `path = \"...\"`",
                    name.get_ref()
                )),
            );
            continue;
        }
        let context = format!("input `{}`", name.get_ref());
        let key = match def.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        }
        .and_then(|t| t.get("fingerprint").map(|_| "fingerprint"));
        match RawInputTable::deserialize(toml::de::ValueDeserializer::from(def)) {
            Ok(table) => raw.inputs.push(RawInput {
                name: name.get_ref().to_string(),
                name_span: name.span(),
                table,
            }),
            Err(e) => errors.push(from_toml_error(&e, name.span(), "key", &context, key)),
        }
    }
}

fn parse_stages<'s>(
    value: Spanned<DeValue<'s>>,
    raw: &mut RawExperiment<'s>,
    errors: &mut Vec<ConfigError>,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(
            ConfigError::at(span, "`stage` must be a table of stages")
                .with_help("write `[stage.<name>]` with a `kind = \"...\"` key"),
        );
        return;
    };
    for (name, def) in table {
        let def_span = def.span();
        let stage_name = name.get_ref().to_string();
        let DeValue::Table(mut body) = def.into_inner() else {
            errors.push(
                ConfigError::at(def_span, format!("stage `{stage_name}` must be a table"))
                    .with_help(format!(
                        "write `[stage.{stage_name}]` with `kind = \"...\"`"
                    )),
            );
            continue;
        };
        let kind = match body.remove("kind") {
            Some(v) => match v.get_ref() {
                DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
                other => {
                    errors.push(ConfigError::at(
                        v.span(),
                        format!(
                            "`kind` of stage `{stage_name}` must be a string, found {}",
                            other.type_str()
                        ),
                    ));
                    None
                }
            },
            None => {
                errors.push(
                    ConfigError::at(name.span(), format!("stage `{stage_name}` has no `kind`"))
                        .with_help("add `kind = \"<kind>\"`; `vaepipe kinds` lists them"),
                );
                None
            }
        };
        let mut from = Vec::new();
        if let Some(v) = body.remove("from") {
            match table_of(&v) {
                Some(roles) => {
                    for (role, target) in roles {
                        match target.get_ref() {
                            DeValue::String(s) => from.push(RawFrom {
                                role: role.get_ref().to_string(),
                                role_span: role.span(),
                                target: s.to_string(),
                                target_span: target.span(),
                            }),
                            other => errors.push(
                                ConfigError::at(
                                    target.span(),
                                    format!(
                                        "`from.{}` must be a string, found {}",
                                        role.get_ref(),
                                        other.type_str()
                                    ),
                                )
                                .with_help("write `\"<stage or input>[/subpath]\"`"),
                            ),
                        }
                    }
                }
                None => errors.push(
                    ConfigError::at(
                        v.span(),
                        format!("`from` of stage `{stage_name}` must be a table"),
                    )
                    .with_help("write `from = { <role> = \"<stage or input>[/subpath]\" }`"),
                ),
            }
        }
        from.sort_by_key(|f| f.role_span.start);
        raw.stages.push(RawStage {
            name: stage_name,
            name_span: name.span(),
            kind,
            from,
            params: Spanned::new(def_span, DeValue::Table(body)),
        });
    }
}

/// The span of the value at a dotted `path` inside a params table (`a.b`, `list.2`).
pub(crate) fn span_of_path(params: &Spanned<DeValue<'_>>, path: &str) -> Option<Range<usize>> {
    let mut current = params;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        current = match current.get_ref() {
            DeValue::Table(t) => t.get(segment)?,
            DeValue::Array(a) => a.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current.span())
}

/// The span of the key naming `path`'s last segment, when it is a table key.
pub(crate) fn key_span_of_path(params: &Spanned<DeValue<'_>>, path: &str) -> Option<Range<usize>> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (p, l),
        None => ("", path),
    };
    let mut current = params;
    for segment in parent.split('.').filter(|s| !s.is_empty()) {
        current = match current.get_ref() {
            DeValue::Table(t) => t.get(segment)?,
            _ => return None,
        };
    }
    match current.get_ref() {
        DeValue::Table(t) => t.get_key_value(last).map(|(k, _)| k.span()),
        _ => None,
    }
}
