#!/usr/bin/env bash
# Brings up a single-node Tugboat on this machine: installs what is missing (build tools,
# containerd, runc, CNI plugins), builds `tug`, puts the demo images in the server's images/
# directory (imported by its node agent at start, so the first deployment needs no registry),
# and runs `tug server` — control plane and this host's node — on the embedded SQLite store
# under $TUG_DATA_DIR (default /var/lib/tugboat).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_packages "${BUILD_PACKAGES[@]}"
ensure_containerd
ensure_rust
data_dir=${TUG_DATA_DIR:-/var/lib/tugboat}
scripts/demo-images "$data_dir/images" >/dev/null
cargo build --release --quiet -p tug
exec target/release/tug server --data-dir "$data_dir" "$@"
