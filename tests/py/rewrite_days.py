"""Rewrites each day of a pinhole dataset into one file per day with another engine,
as an operator compacting by hand would: DuckDB's COPY ... TO (plain strings, snappy)
or pyarrow (large strings, variable-length binary hashes, int64 integers, gzip).
Pinhole's metadata is not carried over.

usage: rewrite_days.py SRC DST duckdb|pyarrow
"""
import pathlib
import sys

src, dst, engine = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
for day in sorted(src.glob("date=*")):
    out = dst / day.name
    out.mkdir(parents=True)
    target = out / "rewritten.parquet"
    if engine == "duckdb":
        import duckdb

        duckdb.connect().execute(
            f"COPY (SELECT * FROM read_parquet('{day}/*.parquet', hive_partitioning = false) ORDER BY ts_ns) "
            f"TO '{target}' (FORMAT parquet, COMPRESSION snappy)"
        )
    else:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pa.concat_tables(pq.read_table(f) for f in sorted(day.glob("*.parquet")))
        columns = []
        for field, column in zip(table.schema, table.columns):
            t = field.type
            if pa.types.is_dictionary(t):
                column = column.cast(pa.large_string())
            elif pa.types.is_fixed_size_binary(t):
                column = column.cast(pa.binary())
            elif pa.types.is_unsigned_integer(t):
                column = column.cast(pa.int64())
            columns.append(column)
        table = pa.table(columns, names=table.column_names)
        pq.write_table(table.replace_schema_metadata(None), target, compression="gzip")
