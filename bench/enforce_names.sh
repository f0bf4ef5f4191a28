#!/usr/bin/env bash
# Connect cost with name rules (issue "names"), measured in one run on this machine (as
# root): connect throughput from one core to a closed loopback port, with no BPF and with
# `pinhole enforce` allowing it by a name rule (the load generator first asks a DNS
# server on loopback for the name, so its own answer vouches for 127.0.0.1), with 10 and
# 10,000 names in the policy, and with one address rule and no names at all, for
# comparison. Tightly alternated pairs, as bench/enforce.sh, then (closed port) the same
# loads at once on one shared core, the steadier measure. Then the DNS reply cost in
# the kernel: replies received per second by a socket that asked, without pinhole and
# under the enforcer (its ingress program parses every reply and stores the evidence).
# The enforcer is attached to a cgroup this script creates (never the root).
# With "listen" the load generator accepts on the port itself, so each connect completes
# a TCP handshake (closed port: the cheapest connect there is, the worst case for a
# ratio; listening: a connect that reaches a server).
# Usage: bench/enforce_names.sh [pairs] [seconds per run] [closed|listen]
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-15}
SECS=${2:-1}
TARGET=${3:-closed}
case $TARGET in
  closed) LISTEN=() ;;
  listen) LISTEN=(--listen) ;;
  *) echo "usage: $0 [pairs] [seconds per run] [closed|listen]" >&2; exit 2 ;;
esac
cargo build --release --locked --bins >&2
PH=$PWD/target/release/pinhole
. bench/paired_enforcer.sh
bench_setup target/release/pinhole-loadgen
SERVER=127.0.10.53:53

cat > "$WORK/dns.py" <<'PY'
import socket, struct, sys, time
def name(n): return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
Q = name("bench.example.test") + struct.pack(">HH", 1, 1)
ANSWER = name("bench.example.test") + struct.pack(">HHIH", 1, 1, 3600, 4) + bytes([127, 0, 0, 1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.10.53", 53))
if sys.argv[1] == "server":
    # One answer per query; a query whose last byte is n > 0 (after the question)
    # gets answers back to back for n seconds (the reply-cost flood).
    while True:
        q, a = s.recvfrom(512)
        reply = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + Q + ANSWER
        secs = q[12 + len(Q)] if len(q) > 12 + len(Q) else 0
        end = time.monotonic() + secs
        s.sendto(reply, a)
        while time.monotonic() < end:
            for _ in range(64):
                s.sendto(reply, a)
PY
cat > "$WORK/flood.py" <<'PY'
import socket, struct, sys, time
def name(n): return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
Q = name("bench.example.test") + struct.pack(">HH", 1, 1)
secs = int(sys.argv[1])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(("127.0.10.53", 53))
c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
c.settimeout(1)
c.send(struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + Q + bytes([secs]))
n = 0
try:
    while True:
        c.recv(512); n += 1
except socket.timeout:
    pass
print(n / secs)
PY
python3 "$WORK/dns.py" server & SERVER_PID=$!
sleep 0.5

# Policies: the load generator's app allows tcp/9 by name (bench.example.test) among
# N names, plus DNS; or by address only.
names_policy() { # $1 = names
  python3 - "$1" "$SHA" "$LG" <<'PY'
import random, sys
n, sha, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = random.Random(n)
print('version = 1\n[defaults]\nunknown_binary = "allow"\n')
print(f'[[app]]\nname = "loadgen"\nsha256 = "{sha}"\npaths = ["{path}"]\n')
print('[[app.allow]]\nid = "dns"\nprotocol = "udp"\ndst = "127.0.10.53/32"\nports = 53\n')
print('[[app.allow]]\nid = "bench"\nprotocol = "tcp"\nhost = "bench.example.test"\nports = 9\n')
for i in range(n - 1):
    wild = "*." if i % 10 == 0 else ""
    print(f'[[app.allow]]\nid = "n{i}"\nprotocol = "tcp"\nhost = "{wild}h{i}.example{i % 97}.com"\nports = {rng.randint(1, 65535)}\n')
PY
}
names_policy 10 > "$WORK/n10.toml"
names_policy 10000 > "$WORK/n10000.toml"
printf 'version = 1\n[defaults]\nunknown_binary = "allow"\n[[app]]\nname = "loadgen"\nsha256 = "%s"\npaths = ["%s"]\n[[app.allow]]\nid = "dns"\nprotocol = "udp"\ndst = "127.0.10.53/32"\nports = 53\n[[app.allow]]\nid = "local"\nprotocol = "tcp"\ndst = "127.0.0.1"\nports = 9\n' \
  "$SHA" "$LG" > "$WORK/addr.toml"

load() { # $1 = cgroup
  sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$1" taskset -c 1 "$LG" --port 9 \
    --duration "${SECS}s" --resolve "bench.example.test@$SERVER" "${LISTEN[@]}"
}

# Both loads at once on core 1, one in each cgroup: the scheduler gives each half the
# core, so the ratio of their rates is the ratio of their CPU cost per connect, and what
# else the machine does at that moment slows both alike (alternated pairs run a second
# apart, and a noisy neighbour in one of them moves that pair's ratio). Not with
# "listen": the two loads would listen on one port.
shared_core() { # $1 = label; appends a row to $WORK/shared.md
  [ "$TARGET" = closed ] || return 0
  : > "$WORK/shared"
  for _ in $(seq 1 "$PAIRS"); do
    load "$BASE" > "$WORK/b.json" & local b=$!
    load "$CG" > "$WORK/c.json" & local c=$!
    wait "$b" "$c"
    echo "$(rate < "$WORK/b.json") $(rate < "$WORK/c.json")" >> "$WORK/shared"
  done
  local ratios
  ratios=$(awk '{printf "%.4f\n", $2 / $1}' "$WORK/shared")
  printf "| %s | %.0f | %.0f | %.3f (%.3f-%.3f) |\n" "$1" \
    "$(cut -d' ' -f1 "$WORK/shared" | median)" "$(cut -d' ' -f2 "$WORK/shared" | median)" \
    "$(echo "$ratios" | median)" "$(echo "$ratios" | sort -g | head -1)" "$(echo "$ratios" | sort -g | tail -1)" \
    >> "$WORK/shared.md"
}
: > "$WORK/shared.md"
shared_core "no enforcer in either (the method's own bias)"

echo "Connects to a $TARGET port (see the header):"
echo "| policy | no BPF (connects/s, median) | enforcer (connects/s, median) | ratio: median (min-max of $PAIRS pairs) | allowed by name |"
echo "|---|---|---|---|---|"
for cfg in n10 n10000 addr; do
  start_enforcer "$WORK/$cfg.toml"
  : > "$WORK/pairs"
  for i in $(seq 1 "$PAIRS"); do
    base=$(load "$BASE"); with=$(load "$CG")
    echo "$(echo "$base" | rate) $(echo "$with" | rate)" >> "$WORK/pairs"
  done
  label=$(case $cfg in n10) echo "10 names";; n10000) echo "10,000 names";; addr) echo "1 address rule, no names";; esac)
  shared_core "$label"
  "$PH" enforce status --format json > "$WORK/status.json"
  stop_enforcer
  allowed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apps"][1]["allowed"])' "$WORK/status.json")
  b=$(cut -d' ' -f1 "$WORK/pairs" | median); w=$(cut -d' ' -f2 "$WORK/pairs" | median)
  ratios=$(awk '{printf "%.4f\n", $2 / $1}' "$WORK/pairs")
  printf "| %s | %.0f | %.0f | %.3f (%.3f-%.3f) | %s |\n" "$label" "$b" "$w" \
    "$(echo "$ratios" | median)" "$(echo "$ratios" | sort -g | head -1)" "$(echo "$ratios" | sort -g | tail -1)" \
    "$([ "$cfg" = addr ] && echo "no ($allowed allowed by address)" || echo "$allowed connects")"
done

if [ "$TARGET" = closed ]; then
  echo
  echo "The same loads at once on one core ($PAIRS rounds of ${SECS}s; each load gets half the core):"
  echo "| policy | no BPF (connects/s, median) | enforcer (connects/s, median) | ratio: median (min-max of $PAIRS rounds) |"
  echo "|---|---|---|---|"
  cat "$WORK/shared.md"
fi

echo
echo "DNS reply cost in the kernel (replies/s to a socket that asked, ${SECS}s floods x 3):"
echo "| round | no enforcer | enforcer with names (parses every reply) | ratio |"
echo "|---|---|---|---|"
flood() { sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$1" python3 "$WORK/flood.py" "$((SECS * 3))"; }
start_enforcer "$WORK/n10.toml"
for r in 1 2 3; do
  base=$(flood "$BASE"); with=$(flood "$CG")
  printf "| %d | %.0f | %.0f | %.3f |\n" "$r" "$base" "$with" "$(echo "$with / $base" | bc -l)"
done
"$PH" enforce status --format json | python3 -c 'import json,sys; n=json.load(sys.stdin)["names"]; print("\nreplies parsed by the kernel: %d (unreadable %d)" % (n["replies"], n["unreadable_replies"]))'
stop_enforcer
