#!/usr/bin/env bash
# Exec latency under the exec gate (issue "hardening", finding 3), measured in one run
# on this machine (as root): fork + exec + exit of /bin/true, timed one by one, with
# - no enforcer;
# - the enforcer idle (its gate answering known files from memory);
# - another process exec'ing fresh 512 MiB files in a loop, of no app's size (answered
#   at once) and of an app's size (each hashed, held at most 1 s);
# - the enforcer stopped with SIGSTOP (its watchdog answers in its place).
# The enforcer is attached to a cgroup this script creates (never the root); the gate
# itself is host-wide, which is what is measured. Usage: bench/exec_gate.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
cargo build --release --locked --bins >&2
PH=$PWD/target/release/pinhole
WORK=$(mktemp -d)
CGROOT=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
CG="$CGROOT/pinhole-bench-gate-$$"
mkdir "$CG"
ENF=""
cleanup() {
  [ -n "$ENF" ] && kill -CONT "$ENF" 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rmdir "$CG" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A 512 MiB app: /bin/true padded with zeros (an ELF runs with trailing bytes).
cp /bin/true "$WORK/app512"
truncate -s 512M "$WORK/app512"
SHA=$(sha256sum "$WORK/app512" | cut -c1-64)
printf 'version = 1\n[[app]]\nname = "big"\nsha256 = "%s"\npaths = ["%s"]\n[[app.allow]]\nid = "l"\nprotocol = "tcp"\ndst = "127.0.0.1"\nports = 9\n' \
  "$SHA" "$WORK/app512" > "$WORK/policy.toml"

start_enforcer() {
  "$PH" enforce "$WORK/policy.toml" --cgroup "$CG" --attach-cgroup "$CG" >"$WORK/enf.log" 2>&1 &
  ENF=$!
  until grep -q " enforcing " "$WORK/enf.log"; do
    kill -0 "$ENF" 2>/dev/null || { cat "$WORK/enf.log" >&2; exit 1; }
    sleep 0.1
  done
}
stop_enforcer() { kill -CONT "$ENF" 2>/dev/null || true; kill -INT "$ENF"; wait "$ENF" || true; ENF=""; }

# Fresh 512 MiB files exec'd back to back until killed: $1 = size in bytes.
storm() {
  local size=$1 i=0
  while :; do
    i=$((i + 1))
    cp /bin/true "$WORK/fresh-$i"
    truncate -s $((size - 1)) "$WORK/fresh-$i"
    printf 'x' >> "$WORK/fresh-$i" # other bytes than the app's, the same size
    "$WORK/fresh-$i" || true
    rm -f "$WORK/fresh-$i"
  done
}

measure() { # $1 = label
  python3 - "$RUNS" "$1" <<'PY'
import subprocess, sys, time
runs, label = int(sys.argv[1]), sys.argv[2]
ts = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(["/bin/true"])
    ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print(f"| {label} | {ts[len(ts) // 2]:.2f} ms | {ts[int(len(ts) * 0.99) - 1]:.2f} ms | {ts[-1]:.2f} ms |")
PY
}

with_storm() { # $1 = file size, $2 = label: measured while the storm runs
  storm "$1" & local s=$!
  sleep 1
  measure "$2"
  kill $s; wait $s 2>/dev/null || true
}

BIG=$(( (512 << 20) + 4096 )) # not the app's size
APP=$(stat -c %s "$WORK/app512")
echo "| condition ($RUNS execs of /bin/true) | p50 | p99 | worst |"
echo "|---|---|---|---|"
measure "no enforcer"
with_storm $BIG "no enforcer, another user execs fresh 512 MiB files"
start_enforcer
measure "enforcer, gate idle"
with_storm $BIG "enforcer, another user execs fresh 512 MiB files (no app's size)"
with_storm $((APP)) "enforcer, another user execs fresh 512 MiB files of the app's size"
kill -STOP "$ENF"
( sleep 60; kill -CONT "$ENF" 2>/dev/null ) & NET=$!
sleep 0.3
measure "enforcer stopped (SIGSTOP), watchdog answering"
kill -CONT "$ENF"
kill $NET 2>/dev/null || true
stop_enforcer
