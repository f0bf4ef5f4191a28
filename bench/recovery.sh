#!/usr/bin/env bash
# Staging size and recovery memory (issue "bounded resources", 2): EVENTS synthetic
# events flushed every 500 (a recorder at 500 events/s), left staged in one segment as
# a recorder killed before its first rotation would; then `pinhole record` publishes
# them at start. Reported: staged bytes per event, the Parquet they become, and the
# recovering process's time and peak RSS. Usage (root): bench/recovery.sh [events]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-10000000}
cargo build --release --locked --bins >&2
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
./target/release/pinhole-synth --out "$DATA" --events "$EVENTS" --apps 300 --destinations 30000 \
  --days 1 --flush-every 500 --leave-staged >&2
staged=$(du -sb "$DATA/.staging" | cut -f1)
/usr/bin/time -f "%e %M" -o "$DATA.time" ./target/release/pinhole record --out "$DATA" --duration 1s 2>/dev/null
read -r secs rss < "$DATA.time"; rm -f "$DATA.time"
parquet=$(find "$DATA" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s}')
printf "| %d | %.1f MiB (%.1f B/event) | %.1f MiB (%.1f B/event) | %.1fx | %.1f s | %d MiB |\n" \
  "$EVENTS" "$(echo "$staged / 1048576" | bc -l)" "$(echo "$staged / $EVENTS" | bc -l)" \
  "$(echo "$parquet / 1048576" | bc -l)" "$(echo "$parquet / $EVENTS" | bc -l)" \
  "$(echo "$staged / $parquet" | bc -l)" "$secs" $((rss / 1024))
