#!/usr/bin/env bash
# Recorder cost, measured in one run on this machine (as root):
#   1. connect throughput from one core to a closed loopback port, without BPF and with
#      `pinhole record` attached, interleaved over several rounds;
#   2. loss at the highest rate two load processes reach;
#   3. bytes per event on disk for a mixed workload.
# Usage: bench/recorder.sh [rounds] [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-5}
cargo build --release --locked --bins >&2
PH=$PWD/target/release/pinhole
LG=$PWD/target/release/pinhole-loadgen
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

rate() { sed -E 's/.*"per_sec":([0-9.]+).*/\1/'; }
p50() { sed -E 's/.*"p50_ns":([0-9]+).*/\1/'; }

start_recorder() { # $1 = out dir; the recorder runs on core 0, the load on core 1
  taskset -c 0 "$PH" record --out "$1" >"$WORK/rec.log" 2>&1 &
  REC=$!
  until grep -q "attached; recording" "$WORK/rec.log"; do sleep 0.1; done
}
cpu_seconds() { # user + system CPU time of a live process
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
stop_recorder() { # sets COUNTS and CPU (not in a $(...) subshell: only this shell can wait for REC)
  CPU=$(cpu_seconds "$REC")
  kill -INT "$REC"; wait "$REC"
  COUNTS=$(grep -oE 'events=[0-9]+ lost=[0-9]+' "$WORK/rec.log" | tail -1)
}

echo "| round | no BPF (connects/s) | recorder (connects/s) | ratio | p50 no BPF / recorder (us) | recorded | lost | recorder CPU (us/event) |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  base=$(taskset -c 1 "$LG" --duration "${SECS}s")
  start_recorder "$WORK/ev-$r"
  with=$(taskset -c 1 "$LG" --duration "${SECS}s")
  stop_recorder; counts=$COUNTS
  b=$(echo "$base" | rate); w=$(echo "$with" | rate)
  recorded=$(echo "$counts" | sed -E 's/events=([0-9]+).*/\1/')
  printf "| %s | %.0f | %.0f | %.3f | %.1f / %.1f | %s | %s | %.2f |\n" "$r" "$b" "$w" "$(echo "$w / $b" | bc -l)" \
    "$(echo "$(echo "$base" | p50) / 1000" | bc -l)" "$(echo "$(echo "$with" | p50) / 1000" | bc -l)" \
    "$recorded" "$(echo "$counts" | sed -E 's/.*lost=//')" "$(echo "$CPU * 1000000 / $recorded" | bc -l)"
done

echo
echo "Two load processes (both cores), recorder attached:"
start_recorder "$WORK/ev-two"
two=$("$LG" --duration "${SECS}s" --procs 2)  # unpinned: load and recorder share both cores
stop_recorder; counts=$COUNTS
echo "- $(echo "$two" | rate | cut -d. -f1) connects/s made, $(echo "$two" | sed -E 's/.*"connects":([0-9]+).*/\1/') connects; recorder: $counts"

echo
echo "Bytes per event, mixed workload (${SECS}s): 5 binaries, TCP/UDP, IPv4/IPv6, 1 to 1,000 ports each, short-lived processes"
start_recorder "$WORK/ev-mix"
for i in 1 2 3 4 5; do cp "$LG" "$WORK/app$i"; done
"$WORK/app1" --addr 127.0.0.1 --port 443 --interval 2ms --duration "${SECS}s" >/dev/null &
"$WORK/app2" --addr ::1 --port 53 --mode sendto --interval 1ms --duration "${SECS}s" >/dev/null &
"$WORK/app3" --addr 127.0.0.2 --port 8000-8999 --interval 3ms --duration "${SECS}s" >/dev/null &
"$WORK/app4" --addr ::1 --port 5432 --mode udp --interval 5ms --duration "${SECS}s" >/dev/null &
end=$((SECONDS + SECS))
while [ $SECONDS -lt $end ]; do "$WORK/app5" --addr 127.0.0.3 --port 80-90 --count 3 >/dev/null; sleep 0.01; done
wait $(jobs -p | grep -v "^$REC$") 2>/dev/null || true
stop_recorder; counts=$COUNTS
events=$(echo "$counts" | sed -E 's/events=([0-9]+).*/\1/')
bytes=$(find "$WORK/ev-mix" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')
printf -- "- %s events, %s bytes of Parquet: %.2f bytes/event (%s)\n" "$events" "$bytes" "$(echo "$bytes / $events" | bc -l)" "$counts"
