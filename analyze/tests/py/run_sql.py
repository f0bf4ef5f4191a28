"""Runs duckdb_profile.sql on a dataset with 2 threads and prints rows as JSON lines."""
import json
import pathlib
import sys

import duckdb

sql = (pathlib.Path(__file__).parent / "duckdb_profile.sql").read_text().replace("${DATASET}", sys.argv[1])
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
for row in con.execute(sql).fetchall():
    print(json.dumps([str(v) if not isinstance(v, int) else v for v in row]))
