#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, fast unit tests, then the tests that start real
# things (etcd, containerd, crashing child processes, a tmpfs for the full-disk test), and last the
# README's up command in a clean Debian 12 root (scripts/fresh-root.sh). Needs root for the
# latter, as CI has.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_packages "${BUILD_PACKAGES[@]}" etcd-server curl
ensure_containerd
ensure_registry_tools
ensure_rust
ensure_kubectl
ensure_python_kubernetes

# A test run is one-shot: incremental caches would only double the size of target/ (a full disk
# once killed the linker with a bare "Bus error").
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
warn_if_low_disk 20

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== unit tests"
cargo test --workspace --lib --bins --quiet
echo "== integration tests (real etcd, crash, full disk, API server with kubectl and client libraries)"
cargo test --workspace --test '*' --quiet -- --test-threads=4
echo "== the README's up command on a clean Debian 12 root (catches install steps this machine hides)"
scripts/fresh-root.sh
