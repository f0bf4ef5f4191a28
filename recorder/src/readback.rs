//! Reading a published file back: its rows and its key-value metadata.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType, TimestampNanosecondType};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, TimeUnit};
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

/// Each row's time in nanoseconds since the epoch, whatever the file's schema: `ts_ns`
/// where present (version 2), else `ts` in nanoseconds (version 1) or, failing both,
/// `ts` in microseconds. None when the batch has no usable time column.
pub fn event_times(batch: &RecordBatch) -> Option<Cow<'_, [i64]>> {
    if let Some(c) = batch.column_by_name(crate::schema::col::TS_NS) {
        if c.data_type() == &DataType::Int64 {
            return Some(Cow::Borrowed(c.as_primitive::<Int64Type>().values()));
        }
    }
    let ts = batch.column_by_name(crate::schema::col::TS)?;
    match ts.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(Cow::Borrowed(
            ts.as_primitive::<TimestampNanosecondType>().values(),
        )),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some(Cow::Owned(
            ts.as_primitive::<TimestampMicrosecondType>()
                .values()
                .iter()
                .map(|us| us.saturating_mul(1000))
                .collect(),
        )),
        _ => None,
    }
}
