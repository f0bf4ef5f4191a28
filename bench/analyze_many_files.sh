#!/usr/bin/env bash
# The same 10 million events as a few files and as about 2,000 (21 days of 15-minute
# rotation at a low rate), each analysed by pinhole and by DuckDB (bench/analyze.sh):
# time and memory should follow the events, not the number of files.
# Usage: bench/analyze_many_files.sh [events] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-10000000}
ROUNDS=${2:-2}
cargo build --release --locked --bins >&2
for files in 5 2000; do
  DATA=$PWD/target/bench-data/files-$files-$EVENTS
  if [ ! -d "$DATA" ]; then
    ./target/release/pinhole-synth --out "$DATA" --events "$EVENTS" --apps 300 \
      --destinations 30000 --days 21 --files "$files" >&2
  fi
  PINHOLE_BENCH_DATA=$DATA bench/analyze.sh "$EVENTS" "$ROUNDS"
  echo
done
