#!/usr/bin/env bash
# DNS reply cost (issue "names"): how many DNS replies per second a socket that asked
# can receive over loopback when a server sends them back to back, without pinhole and
# under `pinhole record` (whose cgroup_skb/ingress program copies every reply to an
# asking socket into its ring, and whose user space parses each into a dns_answer
# row). CPU-bound on both cores, so it shows the cost per reply. Rounds alternate.
# Usage (root):
# bench/dns_reply_cost.sh [seconds per round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}
cargo build --release --locked --bins >&2
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; [ -n "${REC:-}" ] && kill -INT $REC 2>/dev/null; rm -rf "$WORK"' EXIT
cat > "$WORK/dns.py" <<'PY'
import socket, struct, sys, time
def name(n): return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
Q = name("api.example.test") + struct.pack(">HH", 1, 1)
ANSWER = name("api.example.test") + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([127, 0, 10, 1])
if sys.argv[1] == "server":
    # On each query: replies back to back for as long as the query asks.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.10.53", 53))
    while True:
        q, a = s.recvfrom(512)
        reply = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + Q + ANSWER
        end = time.monotonic() + q[12 + len(Q)]
        while time.monotonic() < end:
            for _ in range(64):
                s.sendto(reply, a)
else:
    secs = int(sys.argv[2])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(("127.0.10.53", 53))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    c.settimeout(1)
    c.send(struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + Q + bytes([secs]))
    n, start = 0, time.monotonic()
    try:
        while True:
            c.recv(512); n += 1
    except socket.timeout:
        pass
    print(n / secs)
PY
python3 "$WORK/dns.py" server & SERVER=$!
sleep 0.5
echo "| round | without pinhole (replies/s) | under pinhole record (replies/s) | ratio |"
echo "|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  base=$(python3 "$WORK/dns.py" client "$SECS")
  ./target/release/pinhole record --out "$WORK/trail" >/dev/null 2>&1 & REC=$!
  sleep 2
  with=$(python3 "$WORK/dns.py" client "$SECS")
  kill -INT $REC; wait $REC || true; REC=""
  printf "| %d | %.0f | %.0f | %.3f |\n" "$r" "$base" "$with" "$(echo "$with / $base" | bc -l)"
done
rows=$(target/test-venv/bin/python -c "import pyarrow.dataset as d; print(d.dataset('$WORK/trail', format='parquet').to_table(filter=d.field('hook')=='dns_answer').num_rows)" 2>/dev/null || echo "?")
echo
echo "dns_answer rows written: $rows"
