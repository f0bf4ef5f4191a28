"""Runs a query file (default duckdb_profile.sql) on a dataset with 2 threads and prints
rows as JSON lines: run_sql.py DATASET [QUERY.sql]."""
import json
import pathlib
import sys

import duckdb

query = sys.argv[2] if len(sys.argv) > 2 else "duckdb_profile.sql"
sql = (pathlib.Path(__file__).parent / query).read_text().replace("${DATASET}", sys.argv[1])
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
for row in con.execute(sql).fetchall():
    print(json.dumps([str(v) if not isinstance(v, int) else v for v in row]))
