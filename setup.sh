#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (as root):
#   ./setup.sh record [pinhole record options]   install, build, start recording
#   ./setup.sh test                              install, build, run every test
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "setup.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (pinhole loads BPF programs): sudo ./setup.sh $*"

# Debian packages: libbpf-sys/libbpf-cargo build needs (clang, libelf, zlib, pkg-config,
# make, gcc, the UAPI headers in libc6-dev), plus what the tests drive for real.
BUILD_PKGS=(clang libelf-dev zlib1g-dev pkg-config make gcc libc6-dev)
TEST_PKGS=(bpftool iproute2 python3 python3-venv util-linux curl strace openjdk-17-jre-headless systemd)
# The guest part (tests/vm): QEMU boots Debian's stock kernel (BPF LSM enabled), whose
# .deb tests/vm/run downloads and unpacks under target/vm, never installing it here.
VM_PKGS=(qemu-system-x86 busybox-static cpio)
# The report test renders `pinhole report` in headless Chromium (installed while the
# suite builds).
BROWSER_PKGS=(chromium)

install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install a Rust toolchain (1.89 or newer; Debian 12's rustc is too old), e.g. with rustup"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  record)
    install_packages "${BUILD_PKGS[@]}"
    require_cargo
    cargo build --release --locked --bin pinhole
    has_out=no
    for a in "$@"; do case "$a" in --out|--out=*|-o) has_out=yes ;; esac; done
    if [ "$has_out" = no ]; then set -- --out "${PINHOLE_OUT:-$PWD/pinhole-events}" "$@"; fi
    exec ./target/release/pinhole record "$@"
    ;;
  test)
    install_packages "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    install_packages "${VM_PKGS[@]}" || echo "setup.sh: could not install ${VM_PKGS[*]}; the guest tests will say why they are skipped" >&2
    require_cargo
    mkdir -p target
    install_packages "${BROWSER_PKGS[@]}" >target/browser-install.log 2>&1 &
    browser_pid=$!
    # cargo-deb builds the package that the packaging test installs (and purges). Built
    # in the background while the venv and promtool download; waited for before the tests.
    cargo_deb_pid=
    if ! command -v cargo-deb >/dev/null 2>&1; then
      cargo install -q cargo-deb --locked --version 3.8.0 &
      cargo_deb_pid=$!
    fi
    # Other engines read the dataset in the tests: DuckDB, pyarrow and Spark (pyspark on
    # Debian's JRE), in a venv (Debian's system Python refuses pip installs).
    venv=target/test-venv
    if ! "$venv/bin/python" -c "import duckdb, pyarrow, pytz, pyspark" 2>/dev/null; then
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q --disable-pip-version-check duckdb pyarrow pytz pyspark
    fi
    export PINHOLE_TEST_PYTHON="$PWD/$venv/bin/python"
    # promtool (Debian's prometheus package) checks the metrics pinhole serves: unpacked
    # under target/, never installed (installing would start a Prometheus server).
    promtool=target/promtool/usr/bin/promtool
    if [ ! -x "$promtool" ]; then
      rm -rf target/promtool target/promtool.deb && mkdir -p target/promtool.deb
      if (cd target/promtool.deb && apt-get download -qq prometheus >/dev/null 2>&1); then
        dpkg-deb -x target/promtool.deb/prometheus_*.deb target/promtool
      else
        echo "setup.sh: could not download Debian's prometheus package (promtool)" >&2
      fi
      rm -rf target/promtool.deb
    fi
    export PINHOLE_TEST_PROMTOOL="$PWD/$promtool"
    cargo fmt --all -- --check || die "cargo fmt reports unformatted code"
    # Clippy lints while the tests build, in one compilation: clippy-driver compiles
    # the workspace's crates (every target the tests build: libraries, binaries, tests,
    # examples) with its lints denied, where `cargo clippy` would first type-check every
    # dependency again (about 6 minutes on 2 cores). The same variables stay set for
    # the run and the guest suite so nothing is rebuilt.
    RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
    [ -x "$RUSTC_WORKSPACE_WRAPPER" ] || die "clippy-driver not found (rustup component add clippy)"
    export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
    cargo test --workspace --locked --no-run || die "the build, or clippy's lints (-D warnings), failed"
    if [ -n "$cargo_deb_pid" ]; then
      wait "$cargo_deb_pid" || die "could not install cargo-deb from crates.io"
    fi
    wait "$browser_pid" || die "could not install ${BROWSER_PKGS[*]}: $(tail -3 target/browser-install.log)"

    before=$(bpftool prog list | grep -cE 'name (record_|enforce_)' || true)
    cargo test --workspace --locked "$@"
    # The kernel frees a program an RCU grace period after its last reference goes.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        after=$(bpftool prog list | grep -cE 'name (record_|enforce_)' || true)
        [ "$after" -le "$before" ] && break
        sleep 0.3
    done
    [ "$after" -le "$before" ] || die "tests left $((after - before)) pinhole BPF programs loaded"
    if ls /sys/fs/bpf 2>/dev/null | grep -qi pinhole; then die "tests left something pinned under /sys/fs/bpf"; fi
    [ ! -e /run/pinhole/enforce ] || die "tests left enforcer state in /run/pinhole/enforce"
    if bpftool cgroup tree 2>/dev/null | grep -qE 'enforce_|record_'; then die "tests left a program attached to a cgroup"; fi
    echo "setup.sh: host tests passed; nothing left attached or pinned"
    # The LSM backend and a second kernel, in a QEMU guest (one "vm tests: skipped
    # (why)" line where no guest can be started). Only for the whole suite.
    if [ "$#" -eq 0 ]; then
      bash tests/vm/suite || die "the guest tests failed"
    else
      echo "vm tests: skipped (a filtered run: cargo test arguments given)"
    fi
    echo "setup.sh: all tests passed"
    ;;
  *)
    echo "usage: ./setup.sh record [pinhole record options] | ./setup.sh test [cargo test args]" >&2
    exit 2
    ;;
esac
