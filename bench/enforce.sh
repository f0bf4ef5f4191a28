#!/usr/bin/env bash
# Enforcer cost, measured in one run on this machine (as root): connect throughput from
# one core to a closed loopback port (an allowed destination) with no BPF, and with
# `pinhole enforce` holding 10, 1,000 and 100,000 rules, interleaved over several rounds.
# The enforcer is attached to a cgroup this script creates (never the root), and the
# load runs inside it. Also: the same with every decision written (--out).
# Usage: bench/enforce.sh [rounds] [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-5}
cargo build --release --locked --bins >&2
PH=$PWD/target/release/pinhole
WORK=$(mktemp -d)
CGROOT=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
CG="$CGROOT/pinhole-bench-$$"
mkdir "$CG"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rmdir "$CG" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cp target/release/pinhole-loadgen "$WORK/loadgen"
LG=$WORK/loadgen
SHA=$(sha256sum "$LG" | cut -c1-64)
PORT=9
for n in 10 1000 100000; do
  apps=$(( n >= 100000 ? 100 : (n >= 1000 ? 10 : 1) ))
  python3 bench/policy_of_size.py "$n" "$apps" "$SHA" "$LG" "$PORT" > "$WORK/p$n.toml"
done

rate() { sed -E 's/.*"per_sec":([0-9.]+).*/\1/'; }
p50() { sed -E 's/.*"p50_ns":([0-9]+).*/\1/'; }
load() { # connects from one core, inside the bench cgroup
  sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$CG" taskset -c 1 "$LG" --port "$PORT" --duration "${SECS}s"
}
start_enforcer() { # $1 = policy, rest = extra flags; the enforcer runs on core 0
  local policy=$1; shift
  taskset -c 0 "$PH" enforce "$policy" --cgroup "$CG" "$@" >"$WORK/enf.log" 2>&1 &
  ENF=$!
  until grep -q " enforcing " "$WORK/enf.log"; do
    kill -0 "$ENF" 2>/dev/null || { cat "$WORK/enf.log" >&2; exit 1; }
    sleep 0.1
  done
}
stop_enforcer() { kill -INT "$ENF"; wait "$ENF" || true; }

echo "| round | no BPF (connects/s) | 10 rules | 1,000 rules | 100,000 rules | 100,000 rules + --out | ratios (10 / 1k / 100k / 100k+out) | p50 us (none / 10 / 1k / 100k / out) |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  base=$(load)
  start_enforcer "$WORK/p10.toml"; e10=$(load); stop_enforcer
  start_enforcer "$WORK/p1000.toml"; e1k=$(load); stop_enforcer
  start_enforcer "$WORK/p100000.toml"; e100k=$(load); stop_enforcer
  start_enforcer "$WORK/p100000.toml" --out "$WORK/trail-$r"; eout=$(load); stop_enforcer
  b=$(echo "$base" | rate)
  row="| $r | $(printf %.0f "$b")"
  ratios=""; lat="$(echo "$(echo "$base" | p50) / 1000" | bc -l | xargs printf %.1f)"
  for v in "$e10" "$e1k" "$e100k" "$eout"; do
    x=$(echo "$v" | rate)
    row="$row | $(printf %.0f "$x")"
    ratios="$ratios$(printf %.3f "$(echo "$x / $b" | bc -l)") / "
    lat="$lat / $(echo "$(echo "$v" | p50) / 1000" | bc -l | xargs printf %.1f)"
  done
  echo "$row | ${ratios% / } | $lat |"
done
grep -h "identity table loaded\|enforcing" "$WORK/enf.log" | tail -2 >&2

# How often the first connect of a fresh copy of an allowed binary comes before user
# space has hashed the new inode and updated the identity table (unknown binaries
# denied, so a lost race is a denial). Two binaries: pinhole-probe connects within
# about a millisecond of exec; curl first sets itself up, as most programs do.
race() { # $1 = binary, rest = its arguments (one connect to 127.0.0.1:9)
  local bin=$1; shift
  local sha; sha=$(sha256sum "$bin" | cut -c1-64)
  printf 'version = 1\n[defaults]\nunknown_binary = "deny"\n[[app]]\nname = "app"\nsha256 = "%s"\npaths = ["%s"]\n[[app.allow]]\nid = "local"\nprotocol = "tcp"\ndst = "127.0.0.1"\nports = 9\n' \
    "$sha" "$bin" > "$WORK/race.toml"
  start_enforcer "$WORK/race.toml"
  for i in $(seq 1 100); do
    cp "$bin" "$WORK/copy-$i"
    sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$CG" "$WORK/copy-$i" "$@" >/dev/null 2>&1 || true
    rm -f "$WORK/copy-$i"
  done
  "$PH" enforce status --format json > "$WORK/race.json"
  stop_enforcer
  python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["apps"]; print("- %s: %d of 100 first connects denied (fresh inode not yet hashed), %d allowed as the app" % (sys.argv[2], a[0]["denied"], a[1]["allowed"]))' "$WORK/race.json" "$(basename "$bin") ($(stat -c %s "$bin") bytes)"
}
echo
echo "First connect of a fresh copy (100 copies each):"
cp target/release/pinhole-probe "$WORK/pinhole-probe"
race "$WORK/pinhole-probe" tcp:127.0.0.1:9
cp /usr/bin/curl "$WORK/curl"
race "$WORK/curl" -s --max-time 2 http://127.0.0.1:9/
