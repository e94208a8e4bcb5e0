//! The `[executor]` table, resolved: which executor runs dirty stages ([`ExecutorKind`]) and the
//! options the Slurm executor writes into its job scripts ([`ExecutorConfig`]). Never part of a
//! key.
//!
//! Every value here ends up on an `#SBATCH` line of a job script, so [`resolve`] is where an
//! experiment file from a colleague or a repository is kept from running anything that is not a
//! declared stage: no value may hold a control character (a newline would end the `#SBATCH` line
//! and start a shell command), and no option may be one vaepipe sets itself (`--output`,
//! `--dependency`, ...), neither as a per-kind resource nor in `extra`. The executors themselves
//! live in [`crate::executor`].

use std::collections::BTreeMap;
use std::ops::Range;

use super::error::{suggestion, ConfigError};
use super::raw;
use crate::registry::Registry;

/// `[executor] kind` / `run --executor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Threads in this process (the default).
    #[default]
    Local,
    /// One `sbatch` job per dirty stage.
    Slurm,
}

impl ExecutorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// The resolved `[executor]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorConfig {
    pub kind: ExecutorKind,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// `sbatch --time`, as written.
    pub time: Option<String>,
    /// Extra `sbatch` arguments for every job.
    pub extra: Vec<String>,
    /// Stage kind → its extra `sbatch` arguments (`--gres=gpu:1`), in file order.
    pub resources: BTreeMap<String, Vec<String>>,
}

/// `sbatch` options vaepipe sets itself (or that would change how `sbatch` answers it); neither
/// `extra` nor `[executor.resources.<kind>]` may set them.
pub const RESERVED_SBATCH_OPTIONS: &[&str] = &[
    "dependency",
    "output",
    "error",
    "input",
    "job-name",
    "parsable",
    "chdir",
    "wrap",
    "kill-on-invalid-dep",
    "wait",
];

/// The one-letter forms of [`RESERVED_SBATCH_OPTIONS`] (`-o FILE` is `--output=FILE`).
const RESERVED_SHORT_OPTIONS: &[char] = &['d', 'o', 'e', 'i', 'J', 'D', 'W'];

/// True for a Slurm time limit `sbatch --time` accepts: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`,
/// `D-H:M:S`, or `UNLIMITED`/`INFINITE`.
pub fn valid_time(t: &str) -> bool {
    if matches!(t, "UNLIMITED" | "INFINITE" | "unlimited" | "infinite") {
        return true;
    }
    let numbers = |s: &str, max: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    match t.split_once('-') {
        Some((days, rest)) => {
            !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) && numbers(rest, 3)
        }
        None => numbers(t, 3),
    }
}

/// The reserved option an sbatch argument sets, if any: `--output=x`, `--out=x` (sbatch takes
/// unambiguous prefixes of long options), `-o x`, `-ox`.
pub fn reserved_option(arg: &str) -> Option<&'static str> {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or("");
        if name.is_empty() {
            return None;
        }
        return RESERVED_SBATCH_OPTIONS
            .iter()
            .find(|r| r.starts_with(name))
            .copied();
    }
    // `-Ho/x` is `-H -o /x`: flags without a value may come first; the first letter that takes
    // a value ends the option letters.
    const FLAGS: &[char] = &['H', 'Q', 'v', 'h', 'V', 's', 'O', 'k', 'u'];
    for c in arg.strip_prefix('-')?.chars() {
        if let Some(at) = RESERVED_SHORT_OPTIONS.iter().position(|&r| r == c) {
            return Some(
                [
                    "dependency",
                    "output",
                    "error",
                    "input",
                    "job-name",
                    "chdir",
                    "wait",
                ][at],
            );
        }
        if !FLAGS.contains(&c) {
            break;
        }
    }
    None
}

/// An error for a value holding a control character (newline, CR, NUL, tab...), or `None`.
fn control_character(what: &str, value: &str, span: Range<usize>) -> Option<ConfigError> {
    let c = value.chars().find(|c| c.is_control())?;
    Some(
        ConfigError::at(
            span,
            format!(
                "{what} holds a control character ({:?}); it would end the job script's `#SBATCH` line",
                c
            ),
        )
        .with_help("write the value on one line, without escapes such as `\\n`"),
    )
}

fn reserved_error(span: Range<usize>, arg: &str, opt: &str, place: &str) -> ConfigError {
    ConfigError::at(
        span,
        format!("vaepipe sets `--{opt}` itself; `{arg}` cannot be {place}"),
    )
    .with_help("remove it; dependencies and log paths follow the stage graph and the cache")
}

/// `[executor]` → [`ExecutorConfig`]: a known executor kind, a valid time limit, no control
/// characters anywhere, resources only for known stage kinds, and never an option vaepipe sets
/// itself.
pub(crate) fn resolve(
    raw: Option<&raw::RawExecutor>,
    registry: &Registry,
    errors: &mut Vec<ConfigError>,
) -> ExecutorConfig {
    let Some(raw) = raw else {
        return ExecutorConfig::default();
    };
    let kind = match &raw.kind {
        None => ExecutorKind::Local,
        Some(k) => match k.get_ref().as_str() {
            "local" => ExecutorKind::Local,
            "slurm" => ExecutorKind::Slurm,
            other => {
                errors.push(
                    ConfigError::at(k.span(), format!("unknown executor `{other}`")).with_help_opt(
                        suggestion(other, &["local", "slurm"], "executors")
                            .or_else(|| Some("executors are `local` and `slurm`".to_owned())),
                    ),
                );
                ExecutorKind::Local
            }
        },
    };
    for (what, value) in [
        ("partition", &raw.partition),
        ("account", &raw.account),
        ("time", &raw.time),
    ] {
        if let Some(v) = value {
            errors.extend(control_character(
                &format!("`{what}` of `[executor]`"),
                v.get_ref(),
                v.span(),
            ));
        }
    }
    if let Some(t) = &raw.time {
        if !valid_time(t.get_ref()) && !t.get_ref().contains(char::is_control) {
            errors.push(
                ConfigError::at(
                    t.span(),
                    format!(
                        "`time` of `[executor]` is not a Slurm time limit: `{}`",
                        t.get_ref()
                    ),
                )
                .with_help("write minutes (`30`), `HH:MM:SS` (`4:00:00`) or `D-HH:MM` (`1-12:00`)"),
            );
        }
    }
    for e in &raw.extra {
        let arg = e.get_ref();
        if let Some(err) = control_character("`extra` of `[executor]`", arg, e.span()) {
            errors.push(err);
        } else if !arg.starts_with('-') {
            errors.push(
                ConfigError::at(
                    e.span(),
                    format!("`extra` of `[executor]` holds sbatch options; `{arg}` is not one"),
                )
                .with_help("write options with their dashes, like `\"--qos=long\"`"),
            );
        } else if let Some(opt) = reserved_option(arg) {
            errors.push(reserved_error(e.span(), arg, opt, "in `extra`"));
        }
    }
    let names = registry.names();
    let mut resources = BTreeMap::new();
    for r in &raw.resources {
        if registry.get(&r.kind).is_none() {
            errors.push(
                ConfigError::at(
                    r.kind_span.clone(),
                    format!(
                        "`[executor.resources.{}]` names unknown stage kind `{}`",
                        r.kind, r.kind
                    ),
                )
                .with_help_opt(suggestion(&r.kind, &names, "kinds").or_else(
                    || Some("resources are per stage kind; `vaepipe kinds` lists them".to_owned()),
                )),
            );
            continue;
        }
        let mut args = Vec::new();
        for (opt, span, value) in &r.options {
            let valid_name = !opt.is_empty()
                && !opt.starts_with('-')
                && opt
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                errors.push(
                    ConfigError::at(
                        span.clone(),
                        format!("`{}` is not an sbatch option name", opt.escape_debug()),
                    )
                    .with_help("write the long option without dashes: `gres = \"gpu:1\"`"),
                );
                continue;
            }
            if let Some(reserved) = reserved_option(&format!("--{opt}")) {
                errors.push(
                    ConfigError::at(
                        span.clone(),
                        format!(
                            "vaepipe sets `--{reserved}` itself; it cannot be a per-kind resource"
                        ),
                    )
                    .with_help(
                        "remove it; dependencies and log paths follow the stage graph and the cache",
                    ),
                );
                continue;
            }
            if let Some(v) = value {
                if let Some(err) = control_character(
                    &format!("sbatch option `{opt}` for kind `{}`", r.kind),
                    v,
                    span.clone(),
                ) {
                    errors.push(err);
                    continue;
                }
            }
            args.push(match value {
                Some(v) => format!("--{opt}={v}"),
                None => format!("--{opt}"),
            });
        }
        resources.insert(r.kind.clone(), args);
    }
    ExecutorConfig {
        kind,
        partition: raw.partition.as_ref().map(|p| p.get_ref().clone()),
        account: raw.account.as_ref().map(|a| a.get_ref().clone()),
        time: raw.time.as_ref().map(|t| t.get_ref().clone()),
        extra: raw.extra.iter().map(|e| e.get_ref().clone()).collect(),
        resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_formats() {
        for ok in [
            "30",
            "30:00",
            "1:00:00",
            "2-0",
            "2-12:00",
            "1-00:00:00",
            "UNLIMITED",
        ] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "1-", "a-1", "1::2"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_options_in_every_spelling() {
        for (arg, opt) in [
            ("--output=/etc/cron.d/x", "output"),
            ("--out=x", "output"),
            ("--dependency=afterany:1", "dependency"),
            ("--depend=afterany:1", "dependency"),
            ("--parsable", "parsable"),
            ("--error=x", "error"),
            ("-o", "output"),
            ("-ox", "output"),
            ("-d", "dependency"),
            ("-Jname", "job-name"),
            ("-Ho/etc/cron.d/x", "output"),
            ("--chdir=/", "chdir"),
            ("--wrap=id", "wrap"),
        ] {
            assert_eq!(reserved_option(arg), Some(opt), "{arg}");
        }
        for free in [
            "--qos=long",
            "--gres=gpu:1",
            "--exclusive",
            "-N2",
            "-No",
            "--mem=4G",
        ] {
            assert_eq!(reserved_option(free), None, "{free}");
        }
    }
}
