"""Reads a pinhole dataset with DuckDB and pyarrow and prints what each saw, as JSON.

Used by the integration tests to prove the dataset is readable as one hive-partitioned
table by engines other than pinhole itself.
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds

root = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads = 2")
duck = con.execute(
    f"""
    SELECT count(*), count(DISTINCT date), min(ts)::VARCHAR,
           count(*) FILTER (WHERE exe_status = 'ok' AND exe_sha256 IS NOT NULL),
           list(DISTINCT hook ORDER BY hook)
    FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)
    """
).fetchone()
cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)").fetchall()]
kv = con.execute(
    f"SELECT DISTINCT decode(key), decode(value) FROM parquet_kv_metadata('{root}/**/*.parquet') WHERE decode(key) LIKE 'pinhole.schema_version'"
).fetchall()

table = ds.dataset(root, format="parquet", partitioning="hive", exclude_invalid_files=False).to_table()
print(json.dumps({
    "duckdb_rows": duck[0],
    "duckdb_dates": duck[1],
    "duckdb_hashed_rows": duck[3],
    "duckdb_hooks": duck[4],
    "duckdb_columns": cols,
    "schema_versions": [v for _, v in kv],
    "pyarrow_rows": table.num_rows,
    "pyarrow_sha256_type": str(table.schema.field("exe_sha256").type),
    "pyarrow_ts_type": str(table.schema.field("ts").type),
}))
