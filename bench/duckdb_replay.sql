-- The equivalent of `pinhole policy replay POLICY DATASET --since ${SINCE}` in DuckDB:
-- an event is denied when its binary is one of the policy's apps and no allow rule of
-- that app matches its protocol, address range and port range (unknown binaries are
-- allowed: the generated policy's default). Rules come from bench/policy_rules_csv.py;
-- addresses become integers (IPv6 as UHUGEINT, expanding "::").
CREATE MACRO v6_groups(a) AS CASE WHEN a = '' THEN []::VARCHAR[] ELSE string_split(a, ':') END;
CREATE MACRO v6_int(a) AS list_reduce(list_transform(list_concat(v6_groups(split_part(a, '::', 1)),
    list_transform(range(8 - len(v6_groups(split_part(a, '::', 1))) - len(v6_groups(split_part(a, '::', 2)))), lambda x: '0'),
    v6_groups(split_part(a, '::', 2))), lambda g: ('0x' || g)::UHUGEINT), lambda acc, x: acc * 65536 + x);
CREATE MACRO v4_int(a) AS list_reduce(list_transform(string_split(a, '.'), lambda x: x::UHUGEINT), lambda acc, x: acc * 256 + x);
WITH rules AS (
    SELECT sha, protocol, family, net_lo::UHUGEINT AS net_lo, net_hi::UHUGEINT AS net_hi, port_lo, port_hi
    FROM read_csv('${RULES}', header = true, types = {'net_lo': 'VARCHAR', 'net_hi': 'VARCHAR'})
),
events AS (
    SELECT
        row_number() OVER () AS id,
        lower(hex(exe_sha256)) AS sha,
        protocol,
        dst_port AS port,
        CASE WHEN contains(dst_addr, ':') THEN 6 ELSE 4 END AS family,
        CASE WHEN contains(dst_addr, ':') THEN v6_int(dst_addr) ELSE v4_int(dst_addr) END AS addr
    FROM read_parquet('${DATASET}/**/*.parquet', hive_partitioning = true)
    WHERE ts::TIMESTAMPTZ >= TIMESTAMPTZ '${SINCE} 00:00:00+00'
),
judged AS (
    SELECT e.id, e.sha IN (SELECT sha FROM rules) AS known, bool_or(r.sha IS NOT NULL) AS matched
    FROM events e
    LEFT JOIN rules r
      ON r.sha = e.sha AND r.protocol = e.protocol AND r.family = e.family
     AND e.addr BETWEEN r.net_lo AND r.net_hi AND e.port BETWEEN r.port_lo AND r.port_hi
    GROUP BY e.id, known
)
SELECT count(*) AS events, count(*) FILTER (WHERE known AND NOT matched) AS denied FROM judged;
