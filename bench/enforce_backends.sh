#!/usr/bin/env bash
# The enforcer's two backends side by side, in one run, in a QEMU guest whose kernel runs
# the BPF LSM (this machine's kernel refuses LSM programs):
#   tests/vm/run -- bench/enforce_backends.sh [pairs] [seconds per run]
# Connect throughput from one vCPU to a closed loopback port the policy allows, with no
# BPF, with the cgroup backend and with the LSM backend, at 10 and 100,000 rules. Each
# configuration is measured as PAIRS alternated runs: the load in a sibling cgroup that
# no enforcer decides, then in the enforced cgroup. With no enforcer loaded at all the
# pairs give the noise floor; the LSM backend's sibling still passes its (host-wide)
# hooks, which leave at the --cgroup check, so the table also shows the sibling's rate
# against the no-enforcer one. Under TCG only ratios mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-7}
SECS=${2:-2}
PH=$PWD/target/release/pinhole
LG0=$PWD/target/release/pinhole-loadgen
[ -x "$PH" ] && [ -x "$LG0" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
. bench/paired_enforcer.sh
bench_setup "$LG0"
PORT=9
for n in 10 100000; do
  apps=$(( n >= 100000 ? 100 : 1 ))
  python3 bench/policy_of_size.py "$n" "$apps" "$SHA" "$LG" "$PORT" > "$WORK/p$n.toml"
done

load() { # $1 = cgroup; connects from one vCPU
  sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$1" taskset -c 1 "$LG" --port "$PORT" --duration "${SECS}s"
}

echo "kernel $(uname -r), $(nproc) vCPUs, $PAIRS pairs of ${SECS} s runs per configuration"
echo
echo "| backend | rules | sibling, not decided (connects/s, median) | enforced (connects/s, median) | enforced / sibling: median (min-max) |"
echo "|---|---|---|---|---|"
for cfg in "none -" "cgroup 10" "lsm 10" "cgroup 100000" "lsm 100000"; do
  set -- $cfg
  backend=$1 n=$2
  [ "$backend" = none ] || start_enforcer "$WORK/p$n.toml" --backend "$backend"
  : > "$WORK/pairs"
  for _ in $(seq 1 "$PAIRS"); do
    base=$(load "$BASE"); with=$(load "$CG")
    echo "$(echo "$base" | rate) $(echo "$with" | rate)" >> "$WORK/pairs"
  done
  [ "$backend" = none ] || stop_enforcer
  b=$(cut -d' ' -f1 "$WORK/pairs" | median); w=$(cut -d' ' -f2 "$WORK/pairs" | median)
  ratios=$(awk '{printf "%.4f\n", $2 / $1}' "$WORK/pairs")
  printf "| %s | %s | %.0f | %.0f | %.3f (%.3f-%.3f) |\n" "$backend" "$n" "$b" "$w" \
    "$(echo "$ratios" | median)" "$(echo "$ratios" | sort -g | head -1)" "$(echo "$ratios" | sort -g | tail -1)"
done
