#!/usr/bin/env bash
# Builds target/debian/pinhole_<version>-1_amd64.deb with cargo-deb (installed from
# crates.io when missing): the release binary, stripped of its debug info; the systemd
# units; /etc/pinhole/pinhole.toml; man pages and shell completions from `pinhole docs`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
cargo build --release --locked --bin pinhole
rm -rf target/dist
./target/release/pinhole docs --out target/dist
cargo deb --no-build --locked --strip "$@"
