#!/usr/bin/env bash
# Runs the README's set-up command (scripts/up.sh) as a new user would: in a clean Debian 12 root
# made by `mmdebstrap --variant=minbase` with git, curl and CA certificates, holding a fresh clone
# of this repository's HEAD, with only the rustup toolchain (~/.cargo, ~/.rustup) brought in from
# this machine and a target directory of its own. Then it checks what the README promises: the API
# answers /readyz, the node turns Ready, and the README's first deployment serves HTTP.
#
# It exists because a long-lived machine hides missing install steps (a fresh Debian 12 once failed
# in etcd-client's build for want of libprotobuf-dev while CI stayed green). Ends with one JSON line.
#
# Isolation: everything runs in private mount and PID namespaces, so every mount disappears and
# every process dies with the namespace, whatever happens. It shares the host's network; the server
# listens on a free loopback port, and the pod bridge, pod range and agent port are its own.
# The minbase root is cached in $TUG_FRESH_ROOT_CACHE (default /var/cache/tugboat/fresh-root) and
# copied for each run; apt's downloaded packages are cached beside it (they are still installed by
# up.sh inside the copy, which is the point). Needs root.
# Usage: scripts/fresh-root.sh            (checks the committed HEAD; uncommitted changes are not seen)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
src=$(pwd)
cache=${TUG_FRESH_ROOT_CACHE:-/var/cache/tugboat/fresh-root}
deadline_s=${TUG_FRESH_ROOT_DEADLINE:-2400}

[ "$(id -u)" -eq 0 ] || { echo "error: scripts/fresh-root.sh needs root (chroot, namespaces, mounts)" >&2; exit 1; }
ensure_packages mmdebstrap curl
command -v kubectl >/dev/null 2>&1 || ensure_packages kubernetes-client
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes are not part of this check; it clones HEAD ($(git rev-parse --short HEAD))" >&2
fi

# The recipe names the cached root: a changed recipe makes a new one.
suite=bookworm
includes=ca-certificates,git,curl
recipe="mmdebstrap --variant=minbase --include=$includes $suite"
base="$cache/$suite-minbase"
t0=$(date +%s)
if [ "$(cat "$base.recipe" 2>/dev/null)" != "$recipe" ] || [ ! -x "$base/usr/bin/git" ]; then
  echo "making a clean Debian 12 root (once; cached in $cache)" >&2
  rm -rf "$base" "$base.recipe"
  mkdir -p "$cache"
  mmdebstrap --quiet --variant=minbase --include="$includes" "$suite" "$base.partial" \
    "deb http://deb.debian.org/debian $suite main" \
    "deb http://deb.debian.org/debian $suite-updates main" \
    "deb http://deb.debian.org/debian-security $suite-security main" >"$cache/mmdebstrap.log" 2>&1 \
    || { tail -n 20 "$cache/mmdebstrap.log" >&2; echo '{"fresh_root":"failed","step":"mmdebstrap"}'; exit 1; }
  mv "$base.partial" "$base"
  echo "$recipe" >"$base.recipe"
fi

run=$(mktemp -d /var/tmp/tugt-fresh.XXXXXX)
root="$run/root"
suffix=$(basename "$run" | cut -d. -f2 | tr 'A-Z' 'a-z')
bridge="tugtfr${suffix:0:6}"
octet=$(( $(od -An -N1 -tu1 /dev/urandom) ))
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
agent_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
kubeconfig="$root/var/lib/tugboat/kubeconfig.yaml"
log="$run/up.log"
ns_pid=""
# The server shares this host's network, so its agent's egress NAT table lands here too: removed at
# the end unless it was here before (a real Tugboat on this machine).
podnet_table=tugboat_podnet
podnet_preexisting=$(nft list table ip "$podnet_table" >/dev/null 2>&1 && echo yes || echo no)

cleanup() {
  local rc=$?
  if [ -n "$ns_pid" ] && kill -0 "$ns_pid" 2>/dev/null; then
    # The demo deployment first, so the agent tears its pods down (sandboxes, cgroups) itself.
    if [ -f "$kubeconfig" ]; then
      kubectl --kubeconfig "$kubeconfig" delete deployment tugt-fresh-web --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
      kubectl --kubeconfig "$kubeconfig" wait --for=delete pods --all --timeout=60s >/dev/null 2>&1 || true
    fi
    # Killing the PID namespace's first process kills everything in it; its mounts then go too.
    kill -KILL "$ns_pid" 2>/dev/null || true
    wait "$ns_pid" 2>/dev/null || true
  fi
  ip link del "$bridge" >/dev/null 2>&1 || true
  [ "$podnet_preexisting" = yes ] || nft delete table ip "$podnet_table" >/dev/null 2>&1 || true
  if grep -q " $run/" /proc/mounts; then
    echo "fresh root: mounts remain under $run; left in place" >&2
  else
    rm -rf "$run"
  fi
  exit "$rc"
}
trap cleanup EXIT

cp -a "$base" "$root"
git clone -q "$src" "$root/src/tugboat"
mkdir -p "$root/root/.cargo" "$root/root/.rustup" "$cache/apt-archives/partial" "$root/var/cache/apt/archives"
cp /etc/resolv.conf "$root/etc/resolv.conf"
t_root=$(( $(date +%s) - t0 ))

# Inside private mount and PID namespaces: mounts, then the README's up command in the chroot.
# The root is bound onto itself first: runc makes the container's "/" a slave mount, which fails
# with EINVAL where "/" is a plain directory (a chroot) rather than a mount point.
home=${HOME:-/root}
inner="mount --bind '$root' '$root'
mount -t proc proc '$root/proc'
mount --rbind /sys '$root/sys'
mount --rbind /dev '$root/dev'
mount --bind '$home/.cargo' '$root/root/.cargo'
mount --bind '$home/.rustup' '$root/root/.rustup'
mount --bind '$cache/apt-archives' '$root/var/cache/apt/archives'
chroot '$root' /usr/bin/env -i HOME=/root TERM=dumb \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'cd /src/tugboat && scripts/up.sh --listen 127.0.0.1:$port --agent-api-port $agent_port \
    --cni-bridge $bridge --pod-cidr 10.215.$octet.0/24'"
t1=$(date +%s)
unshare --mount --pid --fork --propagation private --kill-child bash -c "$inner" >"$log" 2>&1 &
ns_pid=$!

fail() {
  echo "fresh root: $1 ($(( $(date +%s) - t1 )) s after start); last lines of up.sh:" >&2
  tail -n 25 "$log" >&2
  # What the agent's own containerd said, and what still runs: the clues when the node is silent.
  for f in "$root"/var/lib/tugboat/containerd.log "$root"/var/lib/tugboat/containerd.log.1; do
    [ -f "$f" ] && { echo "--- last lines of ${f#"$root"}:" >&2; tail -n 15 "$f" >&2; }
  done
  echo "--- processes in the fresh root:" >&2
  ps -eo pid,etimes,stat,wchan:20,args --forest | grep -F -e "$root" -e containerd -e ' tug ' -e ctr | grep -v grep >&2 || true
  echo "{\"fresh_root\":\"failed\",\"step\":\"$2\",\"after_s\":$(( $(date +%s) - t1 ))}"
  exit 1
}

# Build and start: up to the deadline (a cold release build is most of it).
until [ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1; do
  kill -0 "$ns_pid" 2>/dev/null || fail "scripts/up.sh ended before the API answered /readyz" readyz
  [ $(( $(date +%s) - t1 )) -lt "$deadline_s" ] || fail "no ready API server within ${deadline_s} s" readyz
  sleep 2
done
t_ready=$(( $(date +%s) - t1 ))

k() { kubectl --kubeconfig "$kubeconfig" "$@"; }
k wait --for=condition=Ready node --all --timeout=120s >/dev/null 2>&1 \
  || { k get nodes -o wide >&2 || true; fail "the node did not turn Ready within 120 s" node-ready; }
t_node=$(( $(date +%s) - t1 ))

# The README's first deployment: the demo image, no registry, answering on its pod IP.
k create deployment tugt-fresh-web --image=localhost/busybox:1.35 -- httpd -f -p 8080 -h /www >/dev/null \
  || fail "kubectl create deployment was refused" deploy
k rollout status deployment/tugt-fresh-web --timeout=120s >/dev/null 2>&1 \
  || { k get pods -o wide >&2 || true; k describe pods >&2 || true; fail "the demo deployment did not roll out within 120 s" rollout; }
ip=$(k get pods -l app=tugt-fresh-web -o jsonpath='{.items[0].status.podIP}')
answer=$(curl -s --max-time 10 "http://$ip:8080/" || true)
[[ "$answer" == *"hello from tugboat busybox"* ]] || fail "the demo pod at $ip:8080 answered '$answer'" http
t_http=$(( $(date +%s) - t1 ))

echo "{\"fresh_root\":\"ok\",\"root_s\":$t_root,\"up_to_ready_s\":$t_ready,\"node_ready_s\":$t_node,\"first_pod_serving_s\":$t_http,\"total_s\":$(( $(date +%s) - t0 ))}"
