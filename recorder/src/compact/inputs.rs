//! The files of one day that `compact` merges: what each holds, read from its footer,
//! and its SHA-256, so that the compacted file names exactly what it replaced.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::CompactError;
use crate::readback::key_value_metadata;
use crate::schema::{col, meta};

/// One published file of the day.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub name: String,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub rows: u64,
    pub lost_events: u64,
    pub host: String,
}

impl Input {
    /// Reads `path`'s footer (and, for a file another engine rewrote without pinhole's
    /// metadata, its first row's host).
    pub fn read(path: &Path) -> Result<Input, CompactError> {
        let io_err = |e| CompactError::io(path, e);
        let file = File::open(path).map_err(io_err)?;
        let bytes = file.metadata().map_err(io_err)?.len();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| CompactError::read(path, e))?;
        let footer = builder.metadata().file_metadata();
        let rows = u64::try_from(footer.num_rows()).unwrap_or(0);
        let kv = key_value_metadata(footer);
        let lost_events = kv
            .get(meta::LOST_EVENTS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let host = match kv.get(meta::HOST) {
            Some(h) => h.clone(),
            None => first_host(builder)
                .map_err(|e| CompactError::read(path, e))?
                .unwrap_or_else(|| name.split('-').next().unwrap_or_default().to_owned()),
        };
        Ok(Input {
            sha256: crate::file_digest::sha256_and_size(path).map_err(io_err)?.1,
            path: path.to_owned(),
            name,
            bytes,
            rows,
            lost_events,
            host,
        })
    }

    /// The line `compact` writes for this file in `pinhole.compacted_from`.
    pub fn describe(&self) -> String {
        format!(
            "{} bytes={} sha256={} rows={} lost_events={}",
            self.name,
            self.bytes,
            hex::encode(self.sha256),
            self.rows,
            self.lost_events
        )
    }
}

/// The host column's first value, whatever string type a rewriting engine chose.
fn first_host(
    builder: ParquetRecordBatchReaderBuilder<File>,
) -> Result<Option<String>, parquet::errors::ParquetError> {
    let Some(batch) = builder.with_batch_size(1).build()?.next().transpose()? else {
        return Ok(None);
    };
    let Some(column) = batch.column_by_name(col::HOST) else {
        return Ok(None);
    };
    let Ok(text) = arrow_cast::cast(column, &DataType::Utf8) else {
        return Ok(None);
    };
    let text = text.as_string::<i32>();
    Ok((!text.is_empty() && text.is_valid(0)).then(|| text.value(0).to_owned()))
}

/// The day's files grouped by host, each group in name order (the order they were
/// written in); only groups of two or more files are worth rewriting.
pub fn by_host(inputs: Vec<Input>) -> BTreeMap<String, Vec<Input>> {
    let mut groups: BTreeMap<String, Vec<Input>> = BTreeMap::new();
    for i in inputs {
        groups.entry(i.host.clone()).or_default().push(i);
    }
    for g in groups.values_mut() {
        g.sort_by(|a, b| a.name.cmp(&b.name));
    }
    groups.retain(|_, g| g.len() >= 2);
    groups
}
