//! Files another engine rewrote (a day compacted with DuckDB's `COPY ... TO`, pyarrow or
//! Spark): pinhole's columns, but plain strings where pinhole writes dictionaries,
//! variable-length binary for the hash, other integer widths or timestamp units, and
//! no pinhole metadata. Readers take them, cast to pinhole's types batch by batch.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_cast::cast::{can_cast_types, cast_with_options, CastOptions};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use pinhole_recorder::schema::schema;

/// The kinds of type a rewrite may change a column to without changing what it holds.
#[derive(PartialEq, Eq)]
enum Family {
    Text,
    Bytes,
    Integer,
    Time,
    TextList,
    Other,
}

fn family(t: &DataType) -> Family {
    use DataType::*;
    match t {
        Utf8 | LargeUtf8 | Utf8View => Family::Text,
        Dictionary(_, v) if family(v) == Family::Text => Family::Text,
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => Family::Bytes,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Family::Integer,
        Timestamp(_, _) => Family::Time,
        List(f) | LargeList(f) if family(f.data_type()) == Family::Text => Family::TextList,
        _ => Family::Other,
    }
}

/// Whether a column of type `found` can be read as pinhole's `want`: the same kind of
/// value, and a cast arrow can make (values that do not fit fail the read, never wrap).
pub fn readable_as(found: &DataType, want: &DataType) -> bool {
    found == want
        || (family(found) == family(want)
            && family(want) != Family::Other
            && can_cast_types(found, want))
}

/// `batch` with each column of pinhole's in pinhole's type.
pub fn conform(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let expected = schema();
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match expected.field_with_name(field.name()) {
            Ok(want) if want.data_type() != column.data_type() => {
                let cast = cast_with_options(column, want.data_type(), &options)
                    .map_err(|e| ArrowError::CastError(format!("column {}: {e}", field.name())))?;
                fields.push(Field::new(field.name(), want.data_type().clone(), true));
                columns.push(cast);
            }
            _ => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Whether the batches of a file with this schema need `conform`.
pub fn needs_conform(found: &Schema) -> bool {
    let expected = schema();
    found.fields().iter().any(|f| {
        expected
            .field_with_name(f.name())
            .is_ok_and(|w| w.data_type() != f.data_type())
    })
}

/// A reader's batches, conformed where the file's types are not pinhole's.
pub struct Batches<R> {
    pub(crate) inner: R,
    pub(crate) conform: bool,
}

impl<R: Iterator<Item = Result<RecordBatch, ArrowError>>> Iterator for Batches<R> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.inner.next()?;
        Some(if self.conform {
            batch.and_then(conform)
        } else {
            batch
        })
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::{BinaryArray, Int64Array, StringArray};

    use super::*;

    #[test]
    fn strings_hashes_and_integers_become_pinholes_types() {
        let batch = RecordBatch::try_from_iter([
            (
                "comm",
                Arc::new(StringArray::from(vec!["curl", "curl"])) as _,
            ),
            (
                "exe_sha256",
                Arc::new(BinaryArray::from(vec![&[7u8; 32][..], &[8u8; 32][..]])) as _,
            ),
            ("pid", Arc::new(Int64Array::from(vec![1, 2])) as _),
            ("extra", Arc::new(Int64Array::from(vec![1, 2])) as _),
        ])
        .unwrap();
        assert!(needs_conform(&batch.schema()));
        let out = conform(batch).unwrap();
        assert_eq!(out.column(0).as_dictionary::<Int32Type>().len(), 2);
        assert_eq!(out.column(1).as_fixed_size_binary().value(1), [8u8; 32]);
        assert_eq!(out.column(2).data_type(), &DataType::UInt32);
        assert_eq!(
            out.column(3).data_type(),
            &DataType::Int64,
            "other columns untouched"
        );
    }

    #[test]
    fn values_that_do_not_fit_fail_instead_of_changing() {
        let short = RecordBatch::try_from_iter([(
            "exe_sha256",
            Arc::new(BinaryArray::from(vec![&[7u8; 31][..]])) as _,
        )])
        .unwrap();
        assert!(conform(short).is_err(), "a 31-byte hash");
        let big =
            RecordBatch::try_from_iter([("pid", Arc::new(Int64Array::from(vec![1 << 40])) as _)])
                .unwrap();
        assert!(conform(big).is_err(), "a pid beyond u32");
        assert!(
            !readable_as(&DataType::Utf8, &DataType::UInt32),
            "text is not a number"
        );
        assert!(readable_as(&DataType::Int64, &DataType::UInt16));
    }
}
