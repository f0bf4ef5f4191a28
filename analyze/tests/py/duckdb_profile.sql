-- The per-app destination profile as SQL over the hive dataset: what a DuckDB, Spark,
-- Trino or DataFusion user runs at fleet scale. `pinhole analyze` must agree with it
-- exactly (tests/analyze.rs runs this in DuckDB). `${DATASET}` is the dataset root.
-- Times in nanoseconds: `ts_ns` (schema 2), or `ts` of schema 1 files. `names`: the
-- names DNS answers gave the destination's address for, to this app (`dst_name`).
-- Only observed and allowed connects count: an enforcer's denied and would-deny ones
-- are refusals, not traffic to learn from.
SELECT
    coalesce(hex(exe_sha256), 'unresolved:' || exe_status || ':' || coalesce(exe_path, comm)) AS app,
    protocol,
    dst_addr,
    dst_port,
    count(*)                                           AS events,
    min(t)                                             AS first_ns,
    max(t)                                             AS last_ns,
    count(DISTINCT t // 86400000000000)                AS days,
    count(DISTINCT t // 3600000000000)                 AS hours,
    count(DISTINCT uid)                                AS users,
    coalesce(string_agg(DISTINCT dst_name, ',' ORDER BY dst_name), '') AS names
FROM (
    SELECT *, coalesce(ts_ns, epoch_ns(ts)) AS t
    FROM read_parquet('${DATASET}/**/*.parquet', hive_partitioning = true, union_by_name = true)
    WHERE hook IN ('connect', 'sendmsg') AND verdict IN ('observed', 'allowed')
)
GROUP BY ALL
ORDER BY app, protocol, dst_addr, dst_port
