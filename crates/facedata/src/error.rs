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
    /// A dataset is inconsistent as a whole (missing images, rows without images, …).
    #[error("{}: {message}", path.display())]
    Dataset { path: PathBuf, message: String },
    /// An image could not be decoded or does not have the expected shape.
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    /// A parameter or configuration value is out of range.
    #[error("invalid {name}: {message}")]
    Config { name: &'static str, message: String },
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
