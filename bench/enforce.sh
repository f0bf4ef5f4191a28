#!/usr/bin/env bash
# Enforcer cost, measured in one run on this machine (as root): connect throughput from
# one core to a closed loopback port (an allowed destination) with no BPF, and with
# `pinhole enforce` holding 10, 1,000 and 100,000 rules, interleaved over several rounds.
# The enforcer is attached to a cgroup this script creates (never the root), and the
# load runs inside it. Also: the same with every decision written (--out).
# Usage: bench/enforce.sh [pairs] [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-15}
SECS=${2:-1}
cargo build --release --locked --bins >&2
PH=$PWD/target/release/pinhole
. bench/paired_enforcer.sh
bench_setup target/release/pinhole-loadgen
PORT=9
for n in 10 1000 100000; do
  apps=$(( n >= 100000 ? 100 : (n >= 1000 ? 10 : 1) ))
  python3 bench/policy_of_size.py "$n" "$apps" "$SHA" "$LG" "$PORT" > "$WORK/p$n.toml"
done

p50() { sed -E 's/.*"p50_ns":([0-9]+).*/\1/'; }
load() { # $1 = cgroup; connects from one core
  sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$1" taskset -c 1 "$LG" --port "$PORT" --duration "${SECS}s"
}

# The machine drifts by several per cent within a minute, so each configuration is
# measured as PAIRS tightly alternated runs: the same load in a sibling cgroup without
# programs, then in the enforced cgroup. Reported: the median ratio and its spread.
echo "| rules | decisions written | no BPF (connects/s, median) | enforcer (connects/s, median) | ratio: median (min-max of $PAIRS pairs) | p50 no BPF / enforcer (us) |"
echo "|---|---|---|---|---|---|"
for cfg in "10" "1000" "100000" "100000 out"; do
  set -- $cfg
  n=$1; extra=(); written="denials only"
  if [ "${2:-}" = out ]; then extra=(--out "$WORK/trail"); written="all (--out)"; fi
  start_enforcer "$WORK/p$n.toml" "${extra[@]}"
  : > "$WORK/pairs"
  for i in $(seq 1 "$PAIRS"); do
    base=$(load "$BASE"); with=$(load "$CG")
    echo "$(echo "$base" | rate) $(echo "$with" | rate) $(echo "$base" | p50) $(echo "$with" | p50)" >> "$WORK/pairs"
  done
  stop_enforcer
  b=$(cut -d' ' -f1 "$WORK/pairs" | median); w=$(cut -d' ' -f2 "$WORK/pairs" | median)
  ratios=$(awk '{printf "%.4f\n", $2 / $1}' "$WORK/pairs")
  printf "| %s | %s | %.0f | %.0f | %.3f (%.3f-%.3f) | %.1f / %.1f |\n" "$n" "$written" "$b" "$w" \
    "$(echo "$ratios" | median)" "$(echo "$ratios" | sort -g | head -1)" "$(echo "$ratios" | sort -g | tail -1)" \
    "$(echo "$(cut -d' ' -f3 "$WORK/pairs" | median) / 1000" | bc -l)" "$(echo "$(cut -d' ' -f4 "$WORK/pairs" | median) / 1000" | bc -l)"
done
grep -h "identity table loaded\|enforcing" "$WORK/enf.log" | tail -2 >&2

# How often the first connect of a fresh copy of an allowed binary comes before user
# space has hashed the new inode and updated the identity table (unknown binaries
# denied, so a lost race is a denial), with the exec gate and without it. pinhole-probe
# connects within about a millisecond of exec; curl first sets itself up.
race() { # $1 = gate flag or "", $2 = binary, rest = its arguments (one connect to 127.0.0.1:9)
  local flag=$1 bin=$2; shift 2
  local sha; sha=$(sha256sum "$bin" | cut -c1-64)
  printf 'version = 1\n[defaults]\nunknown_binary = "deny"\n[[app]]\nname = "app"\nsha256 = "%s"\npaths = ["%s"]\n[[app.allow]]\nid = "local"\nprotocol = "tcp"\ndst = "127.0.0.1"\nports = 9\n' \
    "$sha" "$bin" > "$WORK/race.toml"
  start_enforcer "$WORK/race.toml" ${flag:+"$flag"}
  for i in $(seq 1 100); do
    cp "$bin" "$WORK/copy-$i"
    sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$CG" "$WORK/copy-$i" "$@" >/dev/null 2>&1 || true
    rm -f "$WORK/copy-$i"
  done
  "$PH" enforce status --format json > "$WORK/race.json"
  stop_enforcer
  python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["apps"]; print("- %s: %d of 100 first connects denied (fresh inode not yet hashed), %d allowed as the app" % (sys.argv[2], a[0]["denied"], a[1]["allowed"]))' "$WORK/race.json" "$(basename "$bin") ($(stat -c %s "$bin") bytes), ${flag:-exec gate on}"
}
echo
echo "First connect of a fresh copy (100 copies each):"
cp target/release/pinhole-probe "$WORK/pinhole-probe"
cp /usr/bin/curl "$WORK/curl"
for flag in "" --no-exec-gate; do
  race "$flag" "$WORK/pinhole-probe" tcp:127.0.0.1:9
  race "$flag" "$WORK/curl" -s --max-time 2 http://127.0.0.1:9/
done

# What the exec gate costs: fork+exec of /bin/true in the enforced cgroup, known file
# (the gate answers from memory) versus no enforcer and versus --no-exec-gate.
execs() { # $1 = cgroup; microseconds per fork+exec, 2,000 of them
  sh -c 'echo $$ > "$1/cgroup.procs"; s=$(date +%s%N); i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done; echo $(( ($(date +%s%N) - s) / 2000000 ))' sh "$1"
}
echo
echo "Exec cost (fork+exec of /bin/true from sh, us each, 3 runs):"
echo "- no enforcer: $(execs "$BASE") / $(execs "$BASE") / $(execs "$BASE")"
start_enforcer "$WORK/p10.toml"
echo "- enforcer with the exec gate: $(execs "$CG") / $(execs "$CG") / $(execs "$CG")"
stop_enforcer
start_enforcer "$WORK/p10.toml" --no-exec-gate
echo "- enforcer with --no-exec-gate: $(execs "$CG") / $(execs "$CG") / $(execs "$CG")"
stop_enforcer
