# shellcheck shell=bash
# Shared by the enforcer benchmarks (sourced, not run): a work directory, the enforced
# cgroup CG and its sibling BASE that no enforcer decides (removed on exit), a private
# copy of the load generator (LG, its SHA), and the helpers that start and stop the
# enforcer on core 0 and summarise alternated pairs of runs.

# $1: the pinhole-loadgen binary to copy.
bench_setup() {
  WORK=$(mktemp -d)
  CGROOT=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
  CG="$CGROOT/pinhole-bench-$$"      # the enforcer is attached here
  BASE="$CGROOT/pinhole-base-$$"     # a sibling with no programs: the baseline
  mkdir "$CG" "$BASE"
  trap bench_cleanup EXIT
  cp "$1" "$WORK/loadgen"
  LG=$WORK/loadgen
  SHA=$(sha256sum "$LG" | cut -c1-64)
}

bench_cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rmdir "$CG" "$BASE" 2>/dev/null || true
  rm -rf "$WORK"
}

# Connects per second from a pinhole-loadgen JSON summary.
rate() { sed -E 's/.*"per_sec":([0-9.]+).*/\1/'; }

# $1 = policy, rest = extra flags; returns once the enforcer says it is enforcing.
start_enforcer() {
  local policy=$1; shift
  taskset -c 0 "$PH" enforce "$policy" --cgroup "$CG" --attach-cgroup "$CG" "$@" >"$WORK/enf.log" 2>&1 &
  ENF=$!
  until grep -q " enforcing " "$WORK/enf.log"; do
    kill -0 "$ENF" 2>/dev/null || { cat "$WORK/enf.log" >&2; exit 1; }
    sleep 0.1
  done
}

stop_enforcer() { kill -INT "$ENF"; wait "$ENF" || true; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
