//! The one error type of the crate. Every variant names the file it is about and, where the
//! problem belongs to one tensor, the tensor too, so a message read in a log is enough to find
//! the broken piece of a checkpoint without a debugger.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while opening or reading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CkptError {
    /// The operating system refused a file (missing, unreadable, ...).
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The `.index` table is structurally broken (bad magic, truncated, bad block layout, keys out
    /// of order, bad header proto, unsupported header fields).
    #[error("{}: malformed checkpoint index: {reason}", file.display())]
    Index { file: PathBuf, reason: String },

    /// A table block's trailer CRC does not match its bytes.
    #[error(
        "{}: checksum mismatch in index block at offset {offset} (stored {stored:#010x}, computed {computed:#010x})",
        file.display()
    )]
    BlockChecksum {
        file: PathBuf,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    /// A tensor's entry is unusable: malformed proto, unknown dtype, size that does not match the
    /// shape, shard out of range, bytes past the end of its data file, unsupported layout.
    #[error("{}: tensor '{tensor}': {reason}", file.display())]
    Entry {
        file: PathBuf,
        tensor: String,
        reason: String,
    },

    /// A tensor's bytes do not match the CRC-32C stored in its entry.
    #[error(
        "{}: tensor '{tensor}': data checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
        file.display()
    )]
    DataChecksum {
        file: PathBuf,
        tensor: String,
        stored: u32,
        computed: u32,
    },

    /// The checkpoint has no tensor of that name.
    #[error("{}: no tensor named '{tensor}' in this checkpoint", file.display())]
    NotFound { file: PathBuf, tensor: String },

    /// The tensor is fine but cannot be returned in the requested type without losing
    /// information in a way this crate does not document (e.g. an int64 beyond 2^24 as f32).
    #[error("{}: tensor '{tensor}': {reason}", file.display())]
    Conversion {
        file: PathBuf,
        tensor: String,
        reason: String,
    },
}

impl CkptError {
    /// The file the error is about (the `.index` file or a `.data-*` shard).
    pub fn file(&self) -> &Path {
        match self {
            CkptError::Io { file, .. }
            | CkptError::Index { file, .. }
            | CkptError::BlockChecksum { file, .. }
            | CkptError::Entry { file, .. }
            | CkptError::DataChecksum { file, .. }
            | CkptError::NotFound { file, .. }
            | CkptError::Conversion { file, .. } => file,
        }
    }

    /// The tensor the error is about, when it is about one.
    pub fn tensor(&self) -> Option<&str> {
        match self {
            CkptError::Entry { tensor, .. }
            | CkptError::DataChecksum { tensor, .. }
            | CkptError::NotFound { tensor, .. }
            | CkptError::Conversion { tensor, .. } => Some(tensor),
            CkptError::Io { .. } | CkptError::Index { .. } | CkptError::BlockChecksum { .. } => {
                None
            }
        }
    }
}
