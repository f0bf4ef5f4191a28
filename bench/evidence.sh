#!/usr/bin/env bash
# What the evidence trail costs per published file (BENCHMARKS.md, "Tamper evidence"):
# two datasets written side by side, file by file, one with a signing key and one
# without (the log is kept either way); each publish timed, then its parts.
# Usage: bench/evidence.sh [FILES] [EVENTS_PER_FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --locked -q -p pinhole-recorder --example evidence_cost -- "$@"
