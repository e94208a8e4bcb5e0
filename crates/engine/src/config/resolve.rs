//! The resolved layer: from a [`RawExperiment`] to the [`Experiment`] the rest of the engine
//! uses. Kinds are looked up, params typed and defaulted, `--set` overrides applied and
//! re-typed, `from` references resolved to stages or inputs, roles checked, and cycles found.
//!
//! Every problem becomes a [`ConfigError`]; all of them are returned together. This is the
//! place a later `[sweep]` expansion slots in (raw → one `Experiment` per sweep point), and
//! what `lock`/`verify` would read; nothing downstream of it sees TOML.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::de::DeValue;

use super::error::{suggestion, ConfigError, ConfigErrors, ErrorSite, SourceFile};
use super::raw::{self, FingerprintMode, RawStage};
use crate::registry::{ErasedKind, Registry, ResolvedParams};

/// An experiment file, resolved and checked.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// Absolute path of the experiment file.
    pub file: PathBuf,
    pub source: Arc<SourceFile>,
    pub seed: u64,
    /// From `[experiment] device`; `--device` wins. Never in a key.
    pub device: Option<String>,
    /// From `[experiment] cache`, made absolute. `--cache-dir` wins.
    pub cache_dir: Option<PathBuf>,
    pub inputs: BTreeMap<String, InputSpec>,
    /// In file order.
    pub stages: Vec<StageSpec>,
    /// The `--set` arguments that were applied, as given.
    pub overrides: Vec<String>,
    /// For one variant of a sweep: its name and swept values (see `config::sweep`).
    pub variant: Option<VariantInfo>,
    /// `[executor]`: where dirty stages run (`run --executor` wins). Never in a key.
    pub executor: super::executor::ExecutorConfig,
    /// From `[experiment] warm_start` (default true): a miss of an extendable stage may
    /// continue its family's largest lower-budget entry (`cache::family`). Never in a key.
    pub warm_start: bool,
    /// `[cache] remote`: the shared remote cache's `s3://` URL (`--remote` wins). Never in a key.
    pub remote: Option<String>,
    /// `[cache] push`: runs push what they compute to the remote. Never in a key.
    pub push: bool,
}

/// Which sweep variant an [`Experiment`] is.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantInfo {
    /// Filesystem-safe, from the swept values: `alfa-0.5_beta-1`.
    pub name: String,
    /// Swept path → typed value (as it is in the resolved params), in axis order.
    pub values: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: String,
    /// Absolute.
    pub path: PathBuf,
    pub mode: FingerprintMode,
}

#[derive(Clone)]
pub struct StageSpec {
    pub name: String,
    pub kind: Arc<dyn ErasedKind>,
    pub params: ResolvedParams,
    /// In file order.
    pub from: Vec<Upstream>,
    pub uses_accelerator: bool,
    /// The param paths that a `--set` changed.
    pub overridden: Vec<String>,
}

impl std::fmt::Debug for StageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSpec")
            .field("name", &self.name)
            .field("kind", &self.kind.kind())
            .field("params", &self.params)
            .field("from", &self.from)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub role: String,
    pub target: UpstreamTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// Another stage's committed artifact directory, plus a subpath inside it ("" for the root).
    Stage { name: String, subpath: String },
    /// An `[input.<name>]` path, plus a subpath inside it.
    Input { name: String, subpath: String },
}

impl StageSpec {
    /// Names of the stages this one reads, deduplicated, in role order.
    pub fn upstream_stages(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.from
            .iter()
            .filter_map(|u| match &u.target {
                UpstreamTarget::Stage { name, .. } if seen.insert(name.as_str()) => {
                    Some(name.as_str())
                }
                _ => None,
            })
            .collect()
    }
}

impl Experiment {
    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }

    /// Where this experiment's stage links go, relative to the runs dir: `<name>`, or
    /// `<name>/<variant>` for a sweep variant.
    pub fn runs_subdir(&self) -> PathBuf {
        match &self.variant {
            Some(v) => Path::new(&self.name).join(&v.name),
            None => PathBuf::from(&self.name),
        }
    }
}

/// Reads and resolves an experiment file. `overrides` are `--set` arguments
/// (`stage.<name>.<param>=<value>` or `experiment.seed=<n>`).
pub fn load(
    path: &Path,
    registry: &Registry,
    overrides: &[String],
) -> Result<Experiment, ConfigErrors> {
    let (source, abs) = read_source(path)?;
    load_str(source, &abs, registry, overrides)
}

/// The file's text (kept for error rendering) and its absolute path.
pub(crate) fn read_source(path: &Path) -> Result<(Arc<SourceFile>, PathBuf), ConfigErrors> {
    let source = |text: String| {
        Arc::new(SourceFile {
            display_path: path.to_path_buf(),
            text,
        })
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(ConfigErrors {
                source: source(String::new()),
                errors: vec![ConfigError::nowhere(format!(
                    "cannot read experiment file `{}`: {e}",
                    path.display()
                ))
                .with_help("check the path; experiment files live in `experiments/`")],
            })
        }
    };
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    Ok((source(text), abs))
}

/// Resolves experiment text; `file` is the absolute path it came from (relative input paths and
/// `cache` start at its directory). Used directly by unit tests. A `[sweep]` table is checked
/// for shape only and otherwise ignored: this is the unswept experiment (`config::sweep` expands
/// it).
pub fn load_str(
    source: Arc<SourceFile>,
    file: &Path,
    registry: &Registry,
    overrides: &[String],
) -> Result<Experiment, ConfigErrors> {
    let text = source.text.clone();
    let (raw, mut errors) = raw::parse(&text);
    let sets = parse_overrides(overrides, &mut errors);
    let exp = resolve_raw(&raw, &source, file, registry, &sets, &mut errors);
    finish(source, errors, exp)
}

/// The `--set` arguments, parsed; bad ones become errors.
pub(crate) fn parse_overrides(args: &[String], errors: &mut Vec<ConfigError>) -> Vec<Override> {
    let mut sets = Vec::new();
    for arg in args {
        match parse_override(arg) {
            Ok(o) => sets.push(o),
            Err(e) => errors.push(e),
        }
    }
    sets
}

/// Sorts and deduplicates `errors`; `Ok` only when there are none.
pub(crate) fn finish<T>(
    source: Arc<SourceFile>,
    mut errors: Vec<ConfigError>,
    value: Option<T>,
) -> Result<T, ConfigErrors> {
    if errors.is_empty() {
        if let Some(v) = value {
            return Ok(v);
        }
        errors.push(ConfigError::nowhere(
            "internal error: config did not resolve",
        ));
    }
    errors.sort_by_key(|e| match &e.site {
        ErrorSite::File(span) => (0, span.start),
        ErrorSite::Override { .. } => (1, 0),
        ErrorSite::Nowhere => (2, 0),
    });
    errors.dedup();
    Err(ConfigErrors { source, errors })
}

/// Resolves the raw experiment with `sets` applied (command-line `--set`s and, for one sweep
/// variant, its swept values). Pushes every problem onto `errors`; `Some` only when this call
/// found none.
pub(crate) fn resolve_raw(
    raw: &raw::RawExperiment<'_>,
    source: &Arc<SourceFile>,
    file: &Path,
    registry: &Registry,
    sets: &[Override],
    errors: &mut Vec<ConfigError>,
) -> Option<Experiment> {
    let before = errors.len();
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();

    let name = match &raw.header.name {
        Some(n) => {
            check_name(n.get_ref(), n.span(), "experiment name", errors);
            n.get_ref().clone()
        }
        None => {
            // A name from the file name names a folder under `runs/` and reaches job scripts
            // just like an explicit one, so it passes the same check.
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "experiment".into());
            if !valid_name(&stem) {
                errors.push(
                    ConfigError::nowhere(format!(
                        "the experiment name `{}` (from the file name) is not a valid directory name",
                        stem.escape_debug()
                    ))
                    .with_help("add `[experiment] name = \"...\"` (letters, digits, `_`, `-`, `.`), or rename the file"),
                );
            }
            stem
        }
    };
    let mut seed = raw.header.seed.as_ref().map_or(0, |s| *s.get_ref());
    let device = raw.header.device.as_ref().map(|d| d.get_ref().clone());
    let cache_dir = raw
        .header
        .cache
        .as_ref()
        .map(|c| base.join(expand_home(c.get_ref())));

    let mut inputs = BTreeMap::new();
    for input in &raw.inputs {
        check_name(&input.name, input.name_span.clone(), "input name", errors);
        let path = base.join(expand_home(input.table.path.get_ref()));
        if !path.exists() {
            errors.push(
                ConfigError::at(
                    input.table.path.span(),
                    format!(
                        "input `{}` does not exist: `{}`",
                        input.name,
                        path.display()
                    ),
                )
                .with_help(input.table.hint.clone().unwrap_or_else(|| {
                    "fix the path (relative paths start at the experiment file's directory)"
                        .to_owned()
                })),
            );
        }
        let mode = input
            .table
            .fingerprint
            .as_ref()
            .map_or(FingerprintMode::Stat, |m| *m.get_ref());
        inputs.insert(
            input.name.clone(),
            InputSpec {
                name: input.name.clone(),
                path,
                mode,
            },
        );
    }

    let stage_names: Vec<&str> = raw.stages.iter().map(|s| s.name.as_str()).collect();
    for (i, s) in raw.stages.iter().enumerate() {
        if raw.inputs.iter().any(|inp| inp.name == s.name) {
            errors.push(
                ConfigError::at(
                    s.name_span.clone(),
                    format!("`{}` names both a stage and an input", s.name),
                )
                .with_help("rename one of them; `from` references must be unambiguous"),
            );
        }
        if stage_names[..i].contains(&s.name.as_str()) {
            errors.push(ConfigError::at(
                s.name_span.clone(),
                format!("duplicate stage `{}`", s.name),
            ));
        }
    }

    // Overrides that do not target a known stage.
    for set in sets {
        match &set.target {
            OverrideTarget::Seed => match set.value.as_u64() {
                Some(v) => seed = v,
                None => errors.push(set.error_on_value(format!(
                    "`experiment.seed` must be a non-negative integer, got {}",
                    set.value
                ))),
            },
            OverrideTarget::Stage { stage, .. } => {
                if !stage_names.contains(&stage.as_str()) {
                    errors.push(
                        set.error_on_key(format!(
                            "{} names unknown stage `{stage}`",
                            set.origin.what()
                        ))
                        .with_help_opt(suggestion(
                            stage,
                            &stage_names,
                            "stages",
                        )),
                    );
                }
            }
        }
    }

    let mut stages = Vec::new();
    for s in &raw.stages {
        check_name(&s.name, s.name_span.clone(), "stage name", errors);
        let stage_sets: Vec<&Override> = sets
            .iter()
            .filter(
                |o| matches!(&o.target, OverrideTarget::Stage { stage, .. } if *stage == s.name),
            )
            .collect();
        if let Some(spec) = resolve_stage(
            s,
            registry,
            &raw.inputs_names(),
            &stage_names,
            &stage_sets,
            errors,
        ) {
            stages.push(spec);
        }
    }

    // Cycles, over the stages whose references resolved.
    for cycle in super::cycles::find_cycles(&raw.stages) {
        let (stage, edge) = cycle.first_edge;
        let path = cycle.names.join("` → `");
        errors.push(
            ConfigError::at(edge, format!("stages form a cycle: `{path}`"))
                .with_help(format!("stage `{stage}` cannot read from a stage that depends on it; remove one `from` reference")),
        );
    }

    let executor = super::executor::resolve(raw.executor.as_ref(), registry, errors);
    let remote = raw.cache.remote.as_ref().map(|r| {
        if let Err(e) = crate::cache::remote::parse_url(r.get_ref()) {
            let message = e.to_string();
            let (what, help) = message.split_once("\n  help: ").unwrap_or((&message, ""));
            errors.push(ConfigError::at(r.span(), what.to_owned()).with_help(help.to_owned()));
        }
        r.get_ref().clone()
    });
    let push = raw.cache.push.as_ref().is_some_and(|p| *p.get_ref());

    if errors.len() > before {
        return None;
    }
    Some(Experiment {
        executor,
        warm_start: raw.header.warm_start.as_ref().is_none_or(|w| *w.get_ref()),
        remote,
        push,
        name,
        file: file.to_path_buf(),
        source: source.clone(),
        seed,
        device,
        cache_dir,
        inputs,
        stages,
        overrides: sets
            .iter()
            .filter_map(|s| match &s.origin {
                Origin::Flag { flag: "--set", arg } => Some(arg.clone()),
                _ => None,
            })
            .collect(),
        variant: None,
    })
}

impl raw::RawExperiment<'_> {
    fn inputs_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|i| i.name.as_str()).collect()
    }
}

/// A name that is one plain folder under `runs/`: letters, digits, `_`, `-`, `.`, not starting
/// with `.` (so never `.` or `..`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_name(name: &str, span: Range<usize>, what: &str, errors: &mut Vec<ConfigError>) {
    if !valid_name(name) {
        errors.push(
            ConfigError::at(
                span,
                format!(
                    "{what} `{}` is not a valid directory name",
                    name.escape_debug()
                ),
            )
            .with_help("use letters, digits, `_`, `-` and `.` (it names a folder under `runs/`)"),
        );
    }
}

fn expand_home(path: &str) -> PathBuf {
    if path == "~" || path.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(path.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    PathBuf::from(path)
}

fn resolve_stage(
    s: &RawStage<'_>,
    registry: &Registry,
    input_names: &[&str],
    stage_names: &[&str],
    sets: &[&Override],
    errors: &mut Vec<ConfigError>,
) -> Option<StageSpec> {
    let kind_name = s.kind.as_ref()?;
    let Some(kind) = registry.get(kind_name.get_ref()) else {
        errors.push(
            ConfigError::at(
                kind_name.span(),
                format!("unknown stage kind `{}`", kind_name.get_ref()),
            )
            .with_help_opt(suggestion(kind_name.get_ref(), &registry.names(), "kinds")),
        );
        return None;
    };

    // `from` references and roles.
    let roles = kind.roles();
    let role_names: Vec<&str> = roles.iter().map(|r| r.name).collect();
    let mut from = Vec::new();
    let mut ok = true;
    for f in &s.from {
        if !role_names.contains(&f.role.as_str()) {
            ok = false;
            let help = if role_names.is_empty() {
                Some(format!(
                    "kind `{}` reads no upstream; remove `from`",
                    kind.kind()
                ))
            } else {
                suggestion(&f.role, &role_names, "roles")
            };
            errors.push(
                ConfigError::at(
                    f.role_span.clone(),
                    format!("kind `{}` has no role `{}`", kind.kind(), f.role),
                )
                .with_help_opt(help),
            );
            continue;
        }
        let (target, subpath) = match f.target.split_once('/') {
            Some((t, sub)) => (t, sub.trim_matches('/')),
            None => (f.target.as_str(), ""),
        };
        if subpath.split('/').any(|c| c == "..") {
            ok = false;
            errors.push(ConfigError::at(
                f.target_span.clone(),
                "a `from` subpath cannot contain `..`",
            ));
            continue;
        }
        let target = if stage_names.contains(&target) {
            if target == s.name {
                ok = false;
                errors.push(ConfigError::at(
                    f.target_span.clone(),
                    format!("stage `{}` reads from itself", s.name),
                ));
                continue;
            }
            UpstreamTarget::Stage {
                name: target.to_owned(),
                subpath: subpath.to_owned(),
            }
        } else if input_names.contains(&target) {
            UpstreamTarget::Input {
                name: target.to_owned(),
                subpath: subpath.to_owned(),
            }
        } else {
            ok = false;
            let candidates: Vec<&str> = stage_names
                .iter()
                .chain(input_names.iter())
                .copied()
                .filter(|n| *n != s.name)
                .collect();
            errors.push(
                ConfigError::at(
                    f.target_span.clone(),
                    format!(
                        "`from.{}` refers to `{target}`, which is neither a stage nor an input",
                        f.role
                    ),
                )
                .with_help_opt(suggestion(
                    target,
                    &candidates,
                    "stages and inputs",
                )),
            );
            continue;
        };
        from.push(Upstream {
            role: f.role.clone(),
            target,
        });
    }
    for r in roles.iter().filter(|r| r.required) {
        if !s.from.iter().any(|f| f.role == r.name) {
            ok = false;
            errors.push(
                ConfigError::at(
                    s.name_span.clone(),
                    format!(
                        "stage `{}` (kind `{}`) needs `from.{}`",
                        s.name,
                        kind.kind(),
                        r.name
                    ),
                )
                .with_help(format!(
                    "add `from = {{ {} = \"<stage or input>\" }}`: {}",
                    r.name, r.doc
                )),
            );
        }
    }

    // Params: typed from TOML. Serde stops at the first error, so on an error the offending key
    // is dropped and deserialisation retried, to report every bad key of the stage in one pass.
    let context = format!("stage `{}` (kind `{}`)", s.name, kind.kind());
    let mut table = s.params.clone();
    let mut param_errors = 0;
    let mut params = loop {
        match kind.params_from_toml(toml::de::ValueDeserializer::from(table.clone())) {
            Ok(p) => break Some(p),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| s.name_span.clone());
                let DeValue::Table(t) = table.get_mut() else {
                    break None;
                };
                let key = raw::key_at(t, &span);
                errors.push(raw::from_toml_error(
                    &e,
                    s.name_span.clone(),
                    "param",
                    &context,
                    key.as_deref(),
                ));
                param_errors += 1;
                match key {
                    Some(k) if param_errors < 32 => {
                        t.remove(k.as_str());
                    }
                    _ => break None,
                }
            }
        }
    };
    if param_errors > 0 {
        params = None;
    }
    let mut params = params?;
    let mut overridden = Vec::new();
    for set in sets {
        let OverrideTarget::Stage { param, .. } = &set.target else {
            continue;
        };
        let mut canonical = params.canonical.clone();
        if let Err(e) = set_json_path(&mut canonical, param, set.value.clone()) {
            errors.push(set.error_on_key(e.message).with_help_opt(e.help));
            return None;
        }
        match kind.params_from_json(canonical) {
            Ok(p) => params = p,
            Err(message) => {
                let key = param.join(".");
                let r = raw::serde_message_to_error(&message, "param", &context, Some(&key));
                errors.push(set.error_on_value(r.message).with_help_opt(r.help));
                return None;
            }
        }
        overridden.push(param.join("."));
    }

    for issue in kind.validate(&params) {
        let site = match sets.iter().find(|o| matches!(&o.target, OverrideTarget::Stage { param, .. } if param.join(".") == issue.path)) {
            Some(o) => o.error_on_value(String::new()).site,
            None => ErrorSite::File(
                raw::span_of_path(&s.params, &issue.path).unwrap_or_else(|| s.name_span.clone()),
            ),
        };
        errors.push(ConfigError {
            message: format!("stage `{}`: {}", s.name, issue.message),
            site,
            help: issue.help,
        });
        ok = false;
    }

    let _ = raw::key_span_of_path;
    if !ok {
        return None;
    }
    Some(StageSpec {
        name: s.name.clone(),
        uses_accelerator: kind.uses_accelerator(&params),
        kind,
        params,
        from,
        overridden,
    })
}

/// One param assignment from outside the stage table: a `--set` argument, one value of a
/// `--sweep` argument, or one value of a `[sweep]` list. Errors point at its key or value.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub(crate) origin: Origin,
    pub(crate) target: OverrideTarget,
    pub(crate) value: serde_json::Value,
    pub(crate) key_span: Range<usize>,
    pub(crate) value_span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A command-line argument of `flag`; spans are inside `arg`.
    Flag { flag: &'static str, arg: String },
    /// The experiment file's `[sweep]` table; spans are file offsets.
    SweepTable,
}

impl Origin {
    fn what(&self) -> String {
        match self {
            Origin::Flag { flag, .. } => format!("`{flag}`"),
            Origin::SweepTable => "`[sweep]`".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OverrideTarget {
    Seed,
    Stage { stage: String, param: Vec<String> },
}

impl OverrideTarget {
    /// `stage.<stage>.<param>` or `experiment.seed`.
    pub(crate) fn parse(key: &str) -> Option<OverrideTarget> {
        let parts: Vec<&str> = key.trim().split('.').collect();
        match parts.as_slice() {
            ["experiment", "seed"] => Some(OverrideTarget::Seed),
            ["stage", stage, param @ ..]
                if !param.is_empty()
                    && !stage.is_empty()
                    && param.iter().all(|p| !p.is_empty()) =>
            {
                Some(OverrideTarget::Stage {
                    stage: (*stage).to_owned(),
                    param: param.iter().map(|p| (*p).to_owned()).collect(),
                })
            }
            _ => None,
        }
    }
}

impl Override {
    fn site(&self, span: &Range<usize>) -> ErrorSite {
        match &self.origin {
            Origin::Flag { flag, arg } => ErrorSite::Override {
                flag,
                arg: arg.clone(),
                span: span.clone(),
            },
            Origin::SweepTable => ErrorSite::File(span.clone()),
        }
    }
    pub(crate) fn error_on_key(&self, message: String) -> ConfigError {
        ConfigError {
            message,
            site: self.site(&self.key_span),
            help: None,
        }
    }
    pub(crate) fn error_on_value(&self, message: String) -> ConfigError {
        ConfigError {
            message,
            site: self.site(&self.value_span),
            help: None,
        }
    }
}

/// A command-line value: a TOML value when it parses as one (`2.0`, `true`, `"x"`, `[1, 2]`),
/// else a bare string.
pub(crate) fn parse_cli_value(text: &str) -> serde_json::Value {
    toml::de::ValueDeserializer::parse(text.trim())
        .ok()
        .and_then(|d| serde_json::Value::deserialize(d).ok())
        .unwrap_or_else(|| serde_json::Value::String(text.to_owned()))
}

fn parse_override(arg: &str) -> Result<Override, ConfigError> {
    let whole = |message: &str, help: &str| ConfigError {
        message: message.to_owned(),
        site: ErrorSite::Override {
            flag: "--set",
            arg: arg.to_owned(),
            span: 0..arg.len(),
        },
        help: Some(help.to_owned()),
    };
    let Some((key, value_text)) = arg.split_once('=') else {
        return Err(whole(
            "`--set` needs `KEY=VALUE`",
            "for example `--set stage.train.alfa=2.0`",
        ));
    };
    let key_span = 0..key.len();
    let value_span = key.len() + 1..arg.len();
    let Some(target) = OverrideTarget::parse(key) else {
        return Err(whole(
            &format!("`--set` cannot set `{key}`"),
            "use `stage.<stage>.<param>=<value>` or `experiment.seed=<n>`",
        ));
    };
    Ok(Override {
        origin: Origin::Flag {
            flag: "--set",
            arg: arg.to_owned(),
        },
        target,
        value: parse_cli_value(value_text),
        key_span,
        value_span,
    })
}

pub(crate) struct PathError {
    pub(crate) message: String,
    pub(crate) help: Option<String>,
}

/// Sets `path` inside a params object, refusing keys the kind does not have (the canonical form
/// lists every field, defaults included, so its keys are exactly the valid ones).
pub(crate) fn set_json_path(
    root: &mut serde_json::Value,
    path: &[String],
    value: serde_json::Value,
) -> Result<(), PathError> {
    let mut current = root;
    for (i, segment) in path.iter().enumerate() {
        let serde_json::Value::Object(map) = current else {
            return Err(PathError {
                message: format!(
                    "`{}` is not a table, so it has no `{segment}`",
                    path[..i].join(".")
                ),
                help: None,
            });
        };
        if !map.contains_key(segment) {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(PathError {
                message: format!("unknown param `{}`", path[..=i].join(".")),
                help: suggestion(segment, &keys, "params"),
            });
        }
        let Some(next) = map.get_mut(segment) else {
            return Err(PathError {
                message: "internal error: param vanished".into(),
                help: None,
            });
        };
        if i + 1 == path.len() {
            *next = value;
            return Ok(());
        }
        current = next;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;
    use crate::stage::{Role, Stage, StageCx};
    use serde::{Deserialize, Serialize};

    struct Train;
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct TrainParams {
        loss_features: String,
        alfa: f64,
        steps: u32,
    }
    impl Default for TrainParams {
        fn default() -> Self {
            TrainParams {
                loss_features: "Conv2d_1a_3x3".into(),
                alfa: 1.0,
                steps: 10,
            }
        }
    }
    impl Stage for Train {
        const KIND: &'static str = "train-vae";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "test";
        type Params = TrainParams;
        fn roles() -> &'static [Role] {
            &[Role {
                name: "dataset",
                required: true,
                doc: "a dataset",
            }]
        }
        fn validate(p: &TrainParams) -> Vec<crate::stage::ParamIssue> {
            if p.loss_features.contains("Conv9") {
                return vec![crate::stage::ParamIssue {
                    path: "loss_features".into(),
                    message: "no layer `Conv9`".into(),
                    help: None,
                }];
            }
            Vec::new()
        }
        fn run(_: &TrainParams, _: &mut StageCx<'_>) -> anyhow::Result<()> {
            Ok(())
        }
    }
    struct Gen;
    impl Stage for Gen {
        const KIND: &'static str = "synth-faces";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "test";
        type Params = TrainParams;
        fn run(_: &TrainParams, _: &mut StageCx<'_>) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn load_text(text: &str, sets: &[&str]) -> Result<Experiment, ConfigErrors> {
        let registry = Registry::new().with::<Train>().with::<Gen>();
        let source = Arc::new(SourceFile {
            display_path: "exp.toml".into(),
            text: text.to_owned(),
        });
        let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
        load_str(source, Path::new("/nonexistent/exp.toml"), &registry, &sets)
    }

    /// Each error as `line:col message [help]`.
    fn check_errors(text: &str, sets: &[&str], expected: &[&str]) {
        let errors = load_text(text, sets).expect_err("expected config errors");
        let got: Vec<String> = errors
            .errors
            .iter()
            .map(|e| {
                let at = match &e.site {
                    ErrorSite::File(span) => {
                        let (l, c) = errors.line_col(span.start);
                        format!("{l}:{c}")
                    }
                    ErrorSite::Override { span, .. } => format!("--set@{}", span.start),
                    ErrorSite::Nowhere => "-".into(),
                };
                let help = e
                    .help
                    .as_ref()
                    .map(|h| format!(" [{h}]"))
                    .unwrap_or_default();
                format!("{at} {}{help}", e.message)
            })
            .collect();
        assert_eq!(got, expected, "\nrendered:\n{errors}");
    }

    const GOOD: &str = "[stage.gen]\nkind = \"synth-faces\"\n\n[stage.train]\nkind = \"train-vae\"\nfrom = { dataset = \"gen/casia\" }\nalfa = 2\n";

    #[test]
    fn a_good_file_resolves() {
        let exp = load_text(GOOD, &[]).unwrap();
        assert_eq!(exp.name, "exp");
        assert_eq!(exp.stage_names(), ["gen", "train"]);
        let train = exp.stage("train").unwrap();
        assert_eq!(train.params.canonical["alfa"], serde_json::json!(2.0));
        assert_eq!(
            train.from[0].target,
            UpstreamTarget::Stage {
                name: "gen".into(),
                subpath: "casia".into()
            }
        );
    }

    #[test]
    fn explicit_default_and_integer_for_float_canonicalise_the_same() {
        let a = load_text("[stage.g]\nkind = \"synth-faces\"\n", &[]).unwrap();
        let b = load_text(
            "[stage.g]\nkind = \"synth-faces\"\nalfa = 1\nsteps = 10\n",
            &[],
        )
        .unwrap();
        assert_eq!(a.stages[0].params.canonical, b.stages[0].params.canonical);
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        check_errors(
            "[stage.train]\nkind = \"train-vae\"\nfrom = { dataset = \"x\" }\nloss_feature = \"a\"\n",
            &[],
            &[
                "3:20 `from.dataset` refers to `x`, which is neither a stage nor an input",
                "4:1 unknown param `loss_feature` in stage `train` (kind `train-vae`) [did you mean `loss_features`?]",
            ],
        );
    }

    #[test]
    fn wrong_types_all_reported_at_their_values() {
        check_errors(
            "[stage.g]\nkind = \"synth-faces\"\nalfa = \"x\"\nsteps = -1\n",
            &[],
            &[
                "3:8 `alfa` in stage `g` (kind `synth-faces`): invalid type: string \"x\", expected f64",
                "4:9 `steps` in stage `g` (kind `synth-faces`): invalid value: integer `-1`, expected u32",
            ],
        );
    }

    #[test]
    fn unknown_kind_role_missing_role_and_duplicate_input_name() {
        check_errors(
            "[input.g]\npath = \"/\"\n\n[stage.g]\nkind = \"synth-face\"\n\n[stage.t]\nkind = \"train-vae\"\nfrom = { datset = \"g\" }\n",
            &[],
            &[
                "4:8 `g` names both a stage and an input [rename one of them; `from` references must be unambiguous]",
                "5:8 unknown stage kind `synth-face` [did you mean `synth-faces`?]",
                "7:8 stage `t` (kind `train-vae`) needs `from.dataset` [add `from = { dataset = \"<stage or input>\" }`: a dataset]",
                "9:10 kind `train-vae` has no role `datset` [did you mean `dataset`?]",
            ],
        );
    }

    #[test]
    fn cycles_point_at_a_from_reference() {
        check_errors(
            "[stage.a]\nkind = \"train-vae\"\nfrom = { dataset = \"b\" }\n[stage.b]\nkind = \"train-vae\"\nfrom = { dataset = \"a\" }\n",
            &[],
            &["3:20 stages form a cycle: `a` → `b` → `a` [stage `a` cannot read from a stage that depends on it; remove one `from` reference]"],
        );
    }

    #[test]
    fn validate_issues_point_at_the_param() {
        check_errors(
            "[stage.g]\nkind = \"synth-faces\"\n\n[stage.t]\nkind = \"train-vae\"\nfrom = { dataset = \"g\" }\nloss_features = \"Conv9\"\n",
            &[],
            &["7:17 stage `t`: no layer `Conv9`"],
        );
    }

    #[test]
    fn syntax_errors_and_unknown_tables() {
        let errors = load_text("[stage.g\nkind = 1\n", &[]).unwrap_err();
        assert_eq!(errors.locations(), ["exp.toml:1:9"]);
        check_errors(
            "[stages.g]\nkind = \"x\"\n",
            &[],
            &["1:2 unknown top-level table `stages` [did you mean `stage`?]"],
        );
    }

    #[test]
    fn overrides_are_type_checked_and_applied() {
        let exp = load_text(
            GOOD,
            &[
                "stage.train.alfa=3",
                "stage.train.loss_features=Conv2d_2a_3x3",
            ],
        )
        .unwrap();
        let p = &exp.stage("train").unwrap().params.canonical;
        assert_eq!(p["alfa"], serde_json::json!(3.0));
        assert_eq!(p["loss_features"], serde_json::json!("Conv2d_2a_3x3"));
        check_errors(
            GOOD,
            &["stage.train.alfa=abc", "stage.trian.alfa=1", "stage.train.alpha=1"],
            &[
                "--set@0 `--set` names unknown stage `trian` [did you mean `train`?]",
                "--set@17 `alfa` in stage `train` (kind `train-vae`): invalid type: string \"abc\", expected f64",
            ],
        );
        check_errors(
            GOOD,
            &["stage.train.alpha=1"],
            &["--set@0 unknown param `alpha` [did you mean `alfa`?]"],
        );
    }

    #[test]
    fn executor_table_resolves_to_sbatch_options() {
        let text = "[stage.t]\nkind = \"synth-faces\"\n\n[executor]\nkind = \"slurm\"\npartition = \"gpu\"\naccount = \"lab\"\ntime = \"1-12:00\"\nextra = [\"--qos=long\"]\n\n[executor.resources.train-vae]\ngres = \"gpu:1\"\ncpus-per-task = 4\nexclusive = true\n";
        let exp = load_text(text, &[]).unwrap();
        let e = &exp.executor;
        assert_eq!(e.kind, super::super::executor::ExecutorKind::Slurm);
        assert_eq!(
            (
                e.partition.as_deref(),
                e.account.as_deref(),
                e.time.as_deref()
            ),
            (Some("gpu"), Some("lab"), Some("1-12:00"))
        );
        assert_eq!(e.extra, ["--qos=long"]);
        assert_eq!(
            e.resources["train-vae"],
            ["--gres=gpu:1", "--cpus-per-task=4", "--exclusive"]
        );
        // No table: the local executor, and no key changes.
        let plain = load_text("[stage.t]\nkind = \"synth-faces\"\n", &[]).unwrap();
        assert_eq!(
            plain.executor,
            super::super::executor::ExecutorConfig::default()
        );
    }

    #[test]
    fn executor_table_errors_point_at_line_and_column() {
        let text = "[stage.t]\nkind = \"synth-faces\"\n\n[executor]\nkind = \"slurmm\"\ntime = \"4h\"\npartion = \"gpu\"\nextra = [\"qos=long\"]\naccount = 7\n\n[executor.resources.trian-vae]\ngres = \"gpu:1\"\n\n[executor.resources.train-vae]\ndependency = \"afterok:1\"\nmem = 1.5\n";
        let e = load_text(text, &[]).unwrap_err();
        assert_eq!(
            e.locations(),
            [
                "exp.toml:5:8",
                "exp.toml:6:8",
                "exp.toml:7:1",
                "exp.toml:8:10",
                "exp.toml:9:11",
                "exp.toml:11:21",
                "exp.toml:15:1",
                "exp.toml:16:7",
            ],
            "{e}"
        );
        let rendered = e.to_string();
        for want in [
            "unknown executor `slurmm`",
            "did you mean `slurm`?",
            "`time` of `[executor]` is not a Slurm time limit: `4h`",
            "unknown key `partion` in `[executor]`",
            "did you mean `partition`?",
            "`qos=long` is not one",
            "`account` of `[executor]` must be a string, found integer",
            "names unknown stage kind `trian-vae`",
            "did you mean `train-vae`?",
            "vaepipe sets `--dependency` itself",
            "sbatch option `mem` for kind `train-vae` must be a string, an integer or `true`, found float",
        ] {
            assert!(rendered.contains(want), "missing {want:?} in:\n{rendered}");
        }
        let e = load_text(
            "[executor]\nkind = \"slurm\"\n[executor.resources]\ntrain-vae = 1\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("must be a table of sbatch options"),
            "{e}"
        );
        let e = load_text("executor = 3\n", &[]).unwrap_err();
        assert_eq!(e.locations(), ["exp.toml:1:12"], "{e}");
    }

    #[test]
    fn executor_values_with_control_characters_or_reserved_options_are_errors_at_their_span() {
        // The injection from the review: a newline in `extra` ended the `#SBATCH` line and the
        // rest ran as a shell command in the job script.
        let text = "[stage.t]\nkind = \"synth-faces\"\n\n[executor]\nkind = \"slurm\"\n\
                    partition = \"gpu\\ntouch P\"\n\
                    account = \"lab\\r\"\n\
                    time = \"1:00\\u0000\"\n\
                    extra = [\"--comment=x\\\\\\\"\\ntouch INJECTED\\n#\", \"--output=/etc/cron.d/x\", \"-Ho/tmp/x\", \"--qos=ok\"]\n\n\
                    [executor.resources.train-vae]\ngres = \"gpu:1\\necho hi\"\nout = \"x\"\n";
        let e = load_text(text, &[]).unwrap_err();
        assert_eq!(
            e.locations(),
            [
                "exp.toml:6:13",
                "exp.toml:7:11",
                "exp.toml:8:8",
                "exp.toml:9:10",
                "exp.toml:9:48",
                "exp.toml:9:74",
                "exp.toml:12:1",
                "exp.toml:13:1",
            ],
            "{e}"
        );
        let rendered = e.to_string();
        for want in [
            "`partition` of `[executor]` holds a control character ('\\n')",
            "`account` of `[executor]` holds a control character ('\\r')",
            "`time` of `[executor]` holds a control character ('\\0')",
            "`extra` of `[executor]` holds a control character ('\\n')",
            "vaepipe sets `--output` itself; `--output=/etc/cron.d/x` cannot be in `extra`",
            "`-Ho/tmp/x` cannot be in `extra`",
            "sbatch option `gres` for kind `train-vae` holds a control character",
            "vaepipe sets `--output` itself; it cannot be a per-kind resource",
        ] {
            assert!(rendered.contains(want), "missing {want:?} in:\n{rendered}");
        }
    }

    #[test]
    fn a_name_from_the_file_name_must_be_a_valid_directory_name() {
        let registry = Registry::new().with::<Train>().with::<Gen>();
        let load = |file: &str| {
            let source = Arc::new(SourceFile {
                display_path: file.into(),
                text: "[stage.t]\nkind = \"synth-faces\"\n".to_owned(),
            });
            load_str(
                source,
                &Path::new("/nonexistent").join(file),
                &registry,
                &[],
            )
        };
        for bad in ["...toml", "a b.toml", "x\ny.toml", ".hidden.toml"] {
            let e = load(bad).unwrap_err();
            assert!(
                e.to_string().contains("is not a valid directory name"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(load("faces.v2.toml").unwrap().name, "faces.v2");
    }
}
