#!/usr/bin/env bash
# The enforcer's memory across reloads (issue "bounded resources", 4): RSS of a running
# `pinhole enforce` holding RULES rules, after every 10 of RELOADS reloads alternating
# two policies of that size, and how long each `pinhole enforce reload` took.
# Attached to a cgroup this script creates (never the root).
# Usage: bench/reload_memory.sh [rules] [reloads]
set -euo pipefail
cd "$(dirname "$0")/.."
RULES=${1:-100000}
RELOADS=${2:-100}
cargo build --release --locked --bins >&2
PH=$PWD/target/release/pinhole
WORK=$(mktemp -d)
CGROOT=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
CG="$CGROOT/pinhole-bench-reload-$$"
mkdir "$CG"
ENF=""
cleanup() {
  [ -n "$ENF" ] && { kill -INT "$ENF" 2>/dev/null; wait "$ENF" 2>/dev/null || true; }
  rmdir "$CG" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cp target/release/pinhole-loadgen "$WORK/lg"
SHA=$(sha256sum "$WORK/lg" | cut -c1-64)
apps=$(( RULES >= 100000 ? 100 : 10 ))
python3 bench/policy_of_size.py "$RULES" "$apps" "$SHA" "$WORK/lg" 9 > "$WORK/a.toml"
python3 bench/policy_of_size.py "$RULES" "$apps" "$SHA" "$WORK/lg" 10 > "$WORK/b.toml"
start=$(date +%s.%N)
"$PH" enforce "$WORK/a.toml" --cgroup "$CG" --attach-cgroup "$CG" >"$WORK/enf.log" 2>&1 &
ENF=$!
until grep -q " enforcing " "$WORK/enf.log"; do
  kill -0 "$ENF" 2>/dev/null || { cat "$WORK/enf.log" >&2; exit 1; }
  sleep 0.05
done
rss() { awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$ENF/status"; }
hwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$ENF/status"; }
printf "Start with %s rules: %.1f s, RSS %s MiB (peak %s MiB)\n\n" "$RULES" "$(echo "$(date +%s.%N) - $start" | bc)" "$(rss)" "$(hwm)"
echo "| reloads | RSS (MiB) | peak RSS (MiB) | last reload (s) |"
echo "|---|---|---|---|"
for i in $(seq 1 "$RELOADS"); do
  p=$WORK/a.toml; [ $((i % 2)) = 1 ] && p=$WORK/b.toml
  t=$(date +%s.%N)
  "$PH" enforce reload "$p" >/dev/null
  took=$(echo "$(date +%s.%N) - $t" | bc)
  if [ $((i % 10)) = 0 ] || [ "$i" = 1 ]; then
    printf "| %d | %s | %s | %.2f |\n" "$i" "$(rss)" "$(hwm)" "$took"
  fi
done
