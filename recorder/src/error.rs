//! Errors of the sink, each naming the file or directory it concerns.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    // The io::Error is part of the message rather than a `source`, so that an
    // anyhow chain does not print it twice.
    #[error("output directory {path} is not usable: {cause}")]
    OutDir { path: PathBuf, cause: io::Error },

    #[error("another pinhole process is writing to {path} (lock held)")]
    Locked { path: PathBuf },

    #[error("{}writing {path}: {cause}", if is_disk_full(.cause) { "disk full while " } else { "" })]
    Write { path: PathBuf, cause: io::Error },

    #[error("encoding {path}: {message}")]
    Encode { path: PathBuf, message: String },

    #[error("building a record batch: {0}")]
    Batch(#[from] arrow_schema::ArrowError),

    #[error("{0}")]
    Evidence(String),
}

impl From<crate::evidence::LogError> for SinkError {
    fn from(e: crate::evidence::LogError) -> Self {
        match e {
            // Keeps a full disk recognisable.
            crate::evidence::LogError::Io { path, source } => SinkError::Write {
                path,
                cause: source,
            },
            other => SinkError::Evidence(other.to_string()),
        }
    }
}

impl SinkError {
    pub(crate) fn write(path: impl Into<PathBuf>, cause: io::Error) -> Self {
        SinkError::Write {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn encode(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        SinkError::Encode {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// True when the cause is a full disk (or quota), which a caller reports specially.
    pub fn is_disk_full(&self) -> bool {
        match self {
            SinkError::Write { cause, .. } | SinkError::OutDir { cause, .. } => is_disk_full(cause),
            _ => false,
        }
    }
}

pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
