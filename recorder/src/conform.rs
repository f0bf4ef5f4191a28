//! Batches staged by an earlier pinhole, made to the current schema before they are
//! published: columns matched by name, older types cast (nanosecond `ts`, unsigned
//! 64-bit ids), columns that did not exist yet filled with nulls (and `ts_ns` from
//! `ts`), so an upgrade never strands what was staged.

use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::ArrowError;

use crate::readback::event_times;
use crate::schema::{col, schema};

/// `batch` in the current schema; the same batch when it already is.
pub fn conform(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let target = schema();
    if batch.schema() == target {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => arrow_cast::cast(c, field.data_type())?,
            None if field.name() == col::TS_NS => {
                let times = event_times(&batch).ok_or_else(|| {
                    ArrowError::SchemaError("a staged batch without a time column".into())
                })?;
                Arc::new(Int64Array::from(times.into_owned()))
            }
            None if field.is_nullable() => new_null_array(field.data_type(), rows),
            None => {
                return Err(ArrowError::SchemaError(format!(
                    "a staged batch without the column {}",
                    field.name()
                )))
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(target, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_without_a_required_column_is_refused_not_invented() {
        let full = crate::BatchBuilder::new("h").finish().unwrap();
        assert_eq!(conform(full.clone()).unwrap().schema(), schema());
        let without_host = full.project(&[0, 2, 3]).unwrap();
        let e = conform(without_host).unwrap_err().to_string();
        assert!(e.contains("without the column host"), "{e}");
    }
}
