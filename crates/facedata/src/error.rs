//! The crate's error type: every variant names the file (and line, where there is one) so the
//! user can open it and fix it. Formatting follows the `file:line: what was expected` shape.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, always with the file it went wrong in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, writing or listing a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A text file (attribute, partition or identity list) is malformed at `line` (1-based).
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Several lines of one text file are malformed: each `(line, message)`, in line order.
    #[error("{}", format_lines(path, problems, *more))]
    Lines {
        path: PathBuf,
        problems: Vec<(usize, String)>,
        /// Further bad lines that were counted but not kept.
        more: usize,
    },
    /// A dataset is inconsistent as a whole (missing images, rows without images, …).
    #[error("{}: {message}", path.display())]
    Dataset { path: PathBuf, message: String },
    /// An image could not be decoded or does not have the expected shape.
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    /// The caller's cancellation flag was set (Ctrl-C, SIGTERM); the work stopped early.
    #[error("interrupted")]
    Interrupted,
    /// A parameter or configuration value is out of range.
    #[error("invalid {name}: {message}")]
    Config { name: &'static str, message: String },
}

/// Shown at most; the rest are counted (a file of 200,000 bad rows is one mistake, repeated).
const LINES_SHOWN: usize = 50;

fn format_lines(path: &std::path::Path, problems: &[(usize, String)], more: usize) -> String {
    let total = problems.len() + more;
    let mut out = format!("{}: {total} bad lines", path.display());
    for (line, message) in problems.iter().take(LINES_SHOWN) {
        out.push_str(&format!("\n  {}:{line}: {message}", path.display()));
    }
    if total > LINES_SHOWN {
        out.push_str(&format!("\n  … and {} more", total - LINES_SHOWN));
    }
    out
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn image(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Image {
            path: path.into(),
            message: message.into(),
        }
    }
}
