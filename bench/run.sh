#!/usr/bin/env bash
# The whole benchmark suite in one command, on a fresh Debian 12 machine, as root:
#   sudo bench/run.sh [--quick] [--json FILE] [--no-audit]
# It builds the release binaries, makes the DuckDB venv if missing, installs each peer
# from Debian packages while it is measured and purges it afterwards. auditd runs last:
# once the kernel has audited, new processes carry an audit context until reboot.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root" >&2; exit 1; }
need=()
for p in clang libelf-dev zlib1g-dev pkg-config make gcc libc6-dev python3 python3-venv util-linux time bc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
venv=target/test-venv
if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q duckdb pyarrow pytz
fi
export PINHOLE_TEST_PYTHON="$PWD/$venv/bin/python"
cargo build --release --locked --bins >&2
exec python3 bench/harness.py "$@"
