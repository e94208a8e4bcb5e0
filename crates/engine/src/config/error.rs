//! Config errors: a message in the user's words, the span it points at, and a `help:` line.
//!
//! Every check on an experiment file (TOML syntax, unknown keys, wrong types, unknown kinds,
//! dangling references, cycles, a kind's own `validate`, a bad `--set`) produces a
//! [`ConfigError`]; they are collected into one [`ConfigErrors`] so the user fixes a file in one
//! pass. Rendering follows cargo's manifest errors: `--> file:line:col`, the source line, a caret
//! under the span, then `= help: ...`. This module renders text itself (a few dozen lines)
//! rather than pulling in annotate-snippets, so the exact layout is pinned by our own tests.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// The text of an experiment file, kept beside the parsed config so every later check can point
/// back at a span.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user gave it (shown after `-->`).
    pub display_path: PathBuf,
    pub text: String,
}

/// Where an error points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorSite {
    /// A byte range of the experiment file.
    File(Range<usize>),
    /// One command-line argument of `flag` (`--set`, `--sweep`): the whole argument and the
    /// byte range inside it.
    Override {
        flag: &'static str,
        arg: String,
        span: Range<usize>,
    },
    /// Nowhere in particular (e.g. the file could not be read).
    Nowhere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub message: String,
    pub site: ErrorSite,
    pub help: Option<String>,
}

impl ConfigError {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            site: ErrorSite::File(span),
            help: None,
        }
    }

    pub fn nowhere(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            site: ErrorSite::Nowhere,
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// All errors of one experiment file, rendered together.
#[derive(Debug)]
pub struct ConfigErrors {
    pub source: Arc<SourceFile>,
    pub errors: Vec<ConfigError>,
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// `(line, column)`, both 1-based, of a byte offset; the column counts characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source.text, offset)
    }

    /// `file:line:col` of each error that points into the file, for tests and tools.
    pub fn locations(&self) -> Vec<String> {
        self.errors
            .iter()
            .filter_map(|e| match &e.site {
                ErrorSite::File(span) => {
                    let (l, c) = self.line_col(span.start);
                    Some(format!("{}:{l}:{c}", self.source.display_path.display()))
                }
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            render_one(f, &self.source, e)?;
        }
        if self.errors.len() > 1 {
            writeln!(f)?;
            writeln!(
                f,
                "error: could not load `{}` due to {} previous errors",
                self.source.display_path.display(),
                self.errors.len()
            )?;
        }
        Ok(())
    }
}

fn render_one(f: &mut fmt::Formatter<'_>, source: &SourceFile, e: &ConfigError) -> fmt::Result {
    writeln!(f, "error: {}", e.message)?;
    let (location, line_text, caret_col, caret_len) = match &e.site {
        ErrorSite::File(span) => {
            let (line, col) = line_col(&source.text, span.start);
            let line_text = source.text.lines().nth(line - 1).unwrap_or("").to_owned();
            let len = source
                .text
                .get(span.clone())
                .map(|s| s.lines().next().unwrap_or("").chars().count())
                .unwrap_or(1)
                .max(1);
            (
                format!("{}:{line}:{col}", source.display_path.display()),
                Some((line, line_text)),
                col,
                len,
            )
        }
        ErrorSite::Override { flag, arg, span } => {
            let text = format!("{flag} {arg}");
            let col = arg.get(..span.start).map_or(0, |s| s.chars().count()) + flag.len() + 2;
            let len = arg
                .get(span.clone())
                .map_or(1, |s| s.chars().count())
                .max(1);
            ("command line".to_owned(), Some((0, text)), col, len)
        }
        ErrorSite::Nowhere => (source.display_path.display().to_string(), None, 0, 0),
    };
    let gutter = match &line_text {
        Some((line, _)) if *line > 0 => line.to_string().len(),
        _ => 1,
    };
    let pad = " ".repeat(gutter);
    writeln!(f, "{pad}--> {location}")?;
    if let Some((line, text)) = line_text {
        writeln!(f, "{pad} |")?;
        let number = if line > 0 {
            line.to_string()
        } else {
            " ".repeat(gutter)
        };
        writeln!(f, "{number} | {text}")?;
        writeln!(
            f,
            "{pad} | {}{}",
            " ".repeat(caret_col - 1),
            "^".repeat(caret_len)
        )?;
    }
    if let Some(help) = &e.help {
        writeln!(f, "{pad} = help: {help}")?;
    }
    Ok(())
}

/// The candidate closest to `name`, when it is close enough to be a likely typo
/// (just's rule: Levenshtein distance, scaled a little for long names).
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `help: did you mean `x`?` or, failing that, the list of valid names.
pub fn suggestion(name: &str, candidates: &[&str], what: &str) -> Option<String> {
    if let Some(best) = did_you_mean(name, candidates.iter().copied()) {
        return Some(format!("did you mean `{best}`?"));
    }
    if candidates.is_empty() {
        return None;
    }
    let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    Some(format!("expected one of the {what}: {}", list.join(", ")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    fn render(text: &str, span: Range<usize>, help: Option<&str>) -> String {
        let errors = ConfigErrors {
            source: Arc::new(SourceFile {
                display_path: "exp.toml".into(),
                text: text.to_owned(),
            }),
            errors: vec![ConfigError {
                message: "unknown param `alfa`".into(),
                site: ErrorSite::File(span),
                help: help.map(str::to_owned),
            }],
        };
        errors.to_string()
    }

    #[test]
    fn renders_location_source_line_caret_and_help() {
        let text = "[stage.t]\nkind = \"x\"\nalfa = 2\n";
        let got = render(text, 21..25, Some("did you mean `alpha`?"));
        let expected = "error: unknown param `alfa`\n --> exp.toml:3:1\n  |\n3 | alfa = 2\n  | ^^^^\n  = help: did you mean `alpha`?\n";
        assert_eq!(got, expected);
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_col("a\nxé = 1", 5), (2, 3));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("loss_feature", ["loss_features", "alpha"]),
            Some("loss_features")
        );
        assert_eq!(did_you_mean("zzzzzz", ["alpha"]), None);
        assert_eq!(
            suggestion("q", &["a", "b"], "roles").as_deref(),
            Some("did you mean `a`?")
        );
    }
}
