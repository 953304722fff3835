# Shared by the set-up scripts: idempotent, quiet installs.

# Installs the Debian packages that are missing (and only those), quietly.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a system-wide etcd on install; Tugboat runs its own, on its own ports.
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

# Rust comes from rustup (Debian 12's rustc is too old for this workspace).
# A fresh build and test run needs about this many GB in target/; say so plainly instead of letting
# the linker die of a full disk.
warn_if_low_disk() {
  local need_gb=$1 free_gb
  mkdir -p target
  free_gb=$(df -Pk target | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "warning: only ${free_gb} GB free under $(pwd)/target; a full build and test run needs about ${need_gb} GB." >&2
    echo "         If the linker fails with 'Bus error', free disk space (e.g. cargo clean) and run again." >&2
  fi
}

ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed. Install Rust with rustup (https://rustup.rs), then run this again." >&2
    exit 1
  fi
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
}

# What building tug needs: a C compiler for SQLite, protoc for the etcd and CRI protocols.
BUILD_PACKAGES=(build-essential pkg-config protobuf-compiler libprotobuf-dev)

# The container runtime the agent drives through CRI: containerd + runc, the CNI plugins its
# pods' network needs, busybox-static from which scripts/demo-images builds the demo images, and
# nftables (`nft`), through which the agent writes its egress NAT and service proxy tables, and
# iproute2 (`ip`), with which it keeps routes to other nodes' pod ranges (minbase lacks it).
# The agent runs its own containerd (own config, socket and state under its data dir), so a
# system-wide one that Debian may start on install is left alone: Docker may need it.
ensure_containerd() {
  ensure_packages containerd runc containernetworking-plugins busybox-static nftables iproute2
}

# A local image registry and the tool that fills it, for the node agent's acceptance test
# (pulling from a registry). Debian's docker-registry may start a system-wide registry on install
# where systemd runs; the tests run their own, on their own ports.
ensure_registry_tools() {
  ensure_packages docker-registry skopeo
}

# kubectl for the acceptance tests: the one on PATH if any (a current one is best), else
# Debian's kubernetes-client.
ensure_kubectl() {
  command -v kubectl >/dev/null 2>&1 || ensure_packages kubernetes-client
}

# The official Python Kubernetes client, for the client-compatibility test.
ensure_python_kubernetes() {
  ensure_packages python3 python3-pip
  python3 -c 'import kubernetes' >/dev/null 2>&1 && return 0
  echo "installing: python kubernetes client (pip)"
  python3 -m pip install -q kubernetes >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages kubernetes >/dev/null
}
