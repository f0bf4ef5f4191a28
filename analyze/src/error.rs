//! Errors of the analyzer, each naming the file or value at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("cannot read dataset {path}: {cause}")]
    Dataset {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{path}: not a readable Parquet file ({detail})")]
    Corrupt { path: PathBuf, detail: String },

    #[error("{path}: not a pinhole dataset file (no pinhole.schema_version in its metadata, and not the columns pinhole reads)")]
    NotPinhole { path: PathBuf },

    #[error("{path}: schema version {found} is newer than this pinhole understands ({supported}); upgrade pinhole")]
    NewerSchema {
        path: PathBuf,
        found: String,
        supported: u32,
    },

    #[error("{path}: column `{column}` {problem}")]
    WrongSchema {
        path: PathBuf,
        column: String,
        problem: String,
    },

    #[error("no events in {path}{window}")]
    Empty { path: PathBuf, window: String },

    #[error("no application matches `{query}`; known apps include: {known}")]
    UnknownApp { query: String, known: String },
}

impl AnalyzeError {
    pub(crate) fn corrupt(path: &std::path::Path, e: impl ToString) -> Self {
        AnalyzeError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        }
    }
}
