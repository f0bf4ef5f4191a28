"""Reads a pinhole dataset with Apache Spark (pyspark, local mode) and prints the
column types Spark chose, the row count, and the earliest event's times, as JSON.

Used by the integration tests to prove that Spark reads every column natively: `ts` as
a timestamp (no legacy flag), 64-bit ids as integers (not decimals).
"""
import json
import sys

from pyspark.sql import SparkSession

root = sys.argv[1]
spark = (
    SparkSession.builder.master("local[1]")
    .appName("pinhole-dataset")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.parquet(root)
first = df.orderBy("ts_ns").select("ts", "ts_ns").first()
print(json.dumps({
    "rows": df.count(),
    "types": {f.name: f.dataType.simpleString() for f in df.schema.fields},
    "first_ts": first["ts"].strftime("%Y-%m-%dT%H:%M:%S.%f"),
    "first_ts_ns": first["ts_ns"],
}))
spark.stop()
