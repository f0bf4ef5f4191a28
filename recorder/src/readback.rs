//! Reading a published file back: its rows and its key-value metadata.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::FileMetaData;

/// A file's key-value metadata (`pinhole.schema_version`, `pinhole.lost_events`, ...).
pub fn key_value_metadata(meta: &FileMetaData) -> BTreeMap<String, String> {
    meta.key_value_metadata()
        .into_iter()
        .flatten()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

/// Every row of one Parquet file, and its key-value metadata.
pub fn read_file(
    path: &Path,
) -> Result<(Vec<RecordBatch>, BTreeMap<String, String>), ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let kv = key_value_metadata(builder.metadata().file_metadata());
    let batches = builder.build()?.collect::<Result<Vec<_>, _>>()?;
    Ok((batches, kv))
}
