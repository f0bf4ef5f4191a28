-- Each app's activity per hour as SQL over the hive dataset: every event (connects,
-- sends, sockets opened; not the recording markers or DNS answers), and how many of
-- them an enforcer denied or would have denied. `pinhole analyze` (each app's
-- `activity`) and `pinhole report` must agree with it exactly.
SELECT
    coalesce(hex(exe_sha256), 'unresolved:' || exe_status || ':' || coalesce(exe_path, comm)) AS app,
    t // 3600000000000                                   AS hour,
    count(*)                                             AS events,
    count(*) FILTER (WHERE verdict = 'denied')           AS denied,
    count(*) FILTER (WHERE verdict = 'would-deny')       AS would_deny
FROM (
    SELECT *, coalesce(ts_ns, epoch_ns(ts)) AS t
    FROM read_parquet('${DATASET}/**/*.parquet', hive_partitioning = true, union_by_name = true)
    WHERE coalesce(hook, '') NOT IN ('recording_started', 'recording_stopped', 'dns_answer')
)
GROUP BY ALL
ORDER BY app, hour
