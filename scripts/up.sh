#!/usr/bin/env bash
# Brings up a single-node Tugboat on this machine: installs what is missing, builds `tug`, and
# runs `tug server` on the embedded SQLite store under $TUG_DATA_DIR (default /var/lib/tugboat).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_packages "${BUILD_PACKAGES[@]}"
ensure_rust
cargo build --release --quiet -p tug
exec target/release/tug server --data-dir "${TUG_DATA_DIR:-/var/lib/tugboat}" "$@"
