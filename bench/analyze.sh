#!/usr/bin/env bash
# Analyzer against DuckDB on the same files, side by side in one run: time and peak
# memory of `pinhole analyze` (per-app destination profile, 2 threads) and of DuckDB
# running the documented equivalent SQL (analyze/tests/py/duckdb_profile.sql, 2 threads).
# Usage: bench/analyze.sh [events] [rounds]    (needs python with duckdb: setup.sh test makes one)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-20000000}
ROUNDS=${2:-3}
PY=${PINHOLE_TEST_PYTHON:-$PWD/target/test-venv/bin/python}
"$PY" -c "import duckdb" || { echo "bench/analyze.sh: $PY has no duckdb (run ./setup.sh test once)" >&2; exit 1; }
cargo build --release --locked --bins >&2
DATA=${PINHOLE_BENCH_DATA:-$PWD/target/bench-data/synth-$EVENTS}
if [ ! -d "$DATA" ]; then
  ./target/release/pinhole-synth --out "$DATA" --events "$EVENTS" --apps 300 --destinations 30000 --days 5 >&2
fi
SQL=$(sed "s|\${DATASET}|$DATA|" analyze/tests/py/duckdb_profile.sql)

measure() { # prints "seconds max_rss_kib" of a command
  /usr/bin/time -f "%e %M" -o "$TMP" "$@" >/dev/null
  cat "$TMP"
}
TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT
files=$(find "$DATA" -name '*.parquet' | wc -l)
bytes=$(du -sb "$DATA" | cut -f1)
echo "Dataset: $EVENTS events, $files files, $((bytes / 1024 / 1024)) MiB ($DATA)"
echo
echo "| round | pinhole analyze (s) | DuckDB (s) | ratio | pinhole peak RSS (MiB) | DuckDB peak RSS (MiB) |"
echo "|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  read -r pt pm < <(measure ./target/release/pinhole analyze "$DATA" --threads 2 --format json -o /dev/null)
  read -r dt dm < <(measure "$PY" -c "import duckdb,sys; c=duckdb.connect(); c.execute('SET threads = 2'); c.execute('SET enable_progress_bar = false'); c.execute(sys.argv[1]).fetchall()" "$SQL")
  printf "| %s | %.2f | %.2f | %.2f | %d | %d |\n" "$r" "$pt" "$dt" "$(echo "$pt / $dt" | bc -l)" $((pm / 1024)) $((dm / 1024))
done
