-- The per-app destination profile as SQL over the hive dataset: what a DuckDB, Spark,
-- Trino or DataFusion user runs at fleet scale. `pinhole analyze` must agree with it
-- exactly (tests/analyze.rs runs this in DuckDB). `${DATASET}` is the dataset root.
SELECT
    coalesce(hex(exe_sha256), 'unresolved:' || exe_status || ':' || coalesce(exe_path, comm)) AS app,
    protocol,
    dst_addr,
    dst_port,
    count(*)                                           AS events,
    epoch_ns(min(ts))                                  AS first_ns,
    epoch_ns(max(ts))                                  AS last_ns,
    count(DISTINCT epoch_ns(ts) // 86400000000000)     AS days,
    count(DISTINCT epoch_ns(ts) // 3600000000000)      AS hours,
    count(DISTINCT uid)                                AS users
FROM read_parquet('${DATASET}/**/*.parquet', hive_partitioning = true)
GROUP BY ALL
ORDER BY app, protocol, dst_addr, dst_port
