#!/usr/bin/env bash
# A test bed of real hypervisor hosts on this one machine (see docs/testbed.md).
#
#   scripts/testbed.sh up N     start hosts 1..N (1 <= N <= 50)
#   scripts/testbed.sh down     remove every trace of the test bed
#   scripts/testbed.sh status   one line per host (key=value); exits 1 unless fully up
#   scripts/testbed.sh restart-libvirtd I   stop host i's own libvirtd and start it again
#
# Host i has:
#   - a network namespace flotilla-tb-i whose eth0 is 198.18.77.(10+i)/24, joined by a veth
#     pair (root end flotilla-tbvI) to the bridge flotilla-tb0 (198.18.77.1/24) in the
#     root namespace. 198.18.0.0/15 is reserved for network benchmarks (RFC 2544): no
#     route leads there from this machine, and nothing inside the namespaces routes
#     anywhere else (no default route, no forwarding).
#   - a bridge br0 inside the namespace for guests (bridge-mode networks), whose port
#     uplink is joined by a veth pair (root end flotilla-tbgI) to the bridge flotilla-tbg0
#     (198.18.78.1/24) in the root namespace: one layer-2 segment across every host and
#     this machine, for guests' own addresses (198.18.78.0/24 in the tests).
#   - its own virtlogd and libvirtd, run in that network namespace and in a private mount
#     namespace that binds $ROOT/host-i/* over /etc/libvirt, /var/lib/libvirt,
#     /var/cache/libvirt, /var/log/libvirt, /run/libvirt and /var/lib/flotilla: the host's
#     own configuration, domains, logs, images (a copy of the machine's test images) and
#     instance disks, at the paths a real host uses. libvirtd's sockets are in
#     $ROOT/host-i/sock, outside those mounts, so a client anywhere on this machine dials
#     qemu:///system?socket=$ROOT/host-i/sock/libvirt-sock.
#   - QEMU configured as scripts/setup-host.sh does, and with no cgroup controllers: the
#     cgroup tree is the machine's, shared with its own libvirtd, and two hosts each
#     running a domain of the same name (qemu-1-NAME) would otherwise share a cgroup.
#
# `up` with the same N when everything answers does nothing; otherwise it takes down what
# is there and starts afresh. `down` with nothing up succeeds. Daemons are stopped by the
# pids they wrote, every other process (QEMU, an agent) by being inside a host's network
# namespace: nothing else on the machine is signalled, and no libvirtd is ever stopped by
# name. Must run as root.
set -euo pipefail

log() { echo "testbed: $*" >&2; }
die() { echo "testbed: ERROR: $*" >&2; exit 1; }

ROOT=/var/lib/flotilla-testbed
BRIDGE=flotilla-tb0
NET=198.18.77
NS_PREFIX=flotilla-tb-
VETH_PREFIX=flotilla-tbv
GUEST_BRIDGE=flotilla-tbg0 # the guests' segment, in the root namespace
GUEST_NET=198.18.78
GUEST_VETH_PREFIX=flotilla-tbg
HOST_BRIDGE=br0 # the guests' bridge inside each host
MAX_HOSTS=50
IMAGES=${FLOTILLA_IMAGE_DIR:-/var/lib/flotilla/images}
WAIT_SECS=${FLOTILLA_TESTBED_WAIT_SECS:-60}
# The directories each host has of its own: state dir name, and where it is mounted.
MOUNTS=(
  etc-libvirt:/etc/libvirt
  var-lib-libvirt:/var/lib/libvirt
  var-cache-libvirt:/var/cache/libvirt
  var-log-libvirt:/var/log/libvirt
  run-libvirt:/run/libvirt
  flotilla:/var/lib/flotilla
)

usage() {
  echo "usage: $0 up N | down | status | restart-libvirtd I" >&2
  exit 2
}

host_dir() { echo "$ROOT/host-$1"; }
host_ns() { echo "$NS_PREFIX$1"; }
host_addr() { echo "$NET.$((10 + $1))"; }
host_sock() { echo "$ROOT/host-$1/sock/libvirt-sock"; }
host_uri() { echo "qemu:///system?socket=$(host_sock "$1")"; }
# Host i's daemons run as tbI-libvirtd and tbI-virtlogd (links to the real binaries): a
# `pkill -x libvirtd` or `pgrep -x libvirtd` meant for the machine's own daemon (as tests
# and scripts/setup-host.sh use) then neither stops nor finds a test bed host's.
daemon_name() { echo "tb$1-$2"; }
libvirtd_pid() { pid_of "$(host_dir "$1")/run-libvirt/libvirtd.pid" "$(daemon_name "$1" libvirtd)"; }
virtlogd_pid() { pid_of "$(host_dir "$1")/run-libvirt/virtlogd.pid" "$(daemon_name "$1" virtlogd)"; }

# pid_of PIDFILE NAME: the pid in PIDFILE if that process is alive and is NAME.
pid_of() {
  local pid
  [[ -r $1 ]] || return 0
  pid=$(<"$1")
  if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$2" ]]; then
    echo "$pid"
  fi
}

# The hosts there are traces of: state dirs and namespaces.
known_hosts() {
  local d ns
  {
    for d in "$ROOT"/host-*; do
      [[ -d $d ]] && echo "${d##*/host-}"
    done
    ip netns list 2>/dev/null | while read -r ns _; do
      [[ $ns == "$NS_PREFIX"* ]] && echo "${ns#"$NS_PREFIX"}"
    done
  } | grep -E '^[0-9]+$' | sort -un || true
}

# ---------------------------------------------------------------- down

# stop_pids WHAT PID...: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pids() {
  local what=$1 pid alive
  shift
  (($#)) || return 0
  log "stopping $what (pids $*)"
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 1 100); do
    alive=()
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null && alive+=("$pid")
    done
    ((${#alive[@]})) || return 0
    sleep 0.1
  done
  log "killing $what (pids ${alive[*]}) after 10s"
  kill -KILL "${alive[@]}" 2>/dev/null || true
}

# The pids of every process in host i's network namespace (QEMU, agents, the daemons).
ns_pids() {
  local ns
  ns=$(host_ns "$1")
  ip netns list 2>/dev/null | grep -E "^$ns( |$)" >/dev/null || return 0
  ip netns pids "$ns" 2>/dev/null || true
}

# host_pids I: host i's processes other than libvirtd: virtlogd, QEMUs (by the pid files
# its libvirtd wrote) and whatever else is in its network namespace (QEMUs, agents).
host_pids() {
  local i=$1 f
  virtlogd_pid "$i"
  for f in "$(host_dir "$i")"/run-libvirt/qemu/*.pid; do
    [[ -e $f ]] && pid_of "$f" qemu-system-x86
  done
  ns_pids "$i"
}

down() {
  local i d ns hosts pids
  hosts=$(known_hosts)
  # Every libvirtd first (together: each takes seconds to exit), so that none sees its
  # QEMUs die and acts on it; then everything else of the hosts.
  mapfile -t pids < <(for i in $hosts; do libvirtd_pid "$i"; done)
  stop_pids "libvirtd" "${pids[@]}"
  mapfile -t pids < <(for i in $hosts; do host_pids "$i"; done | grep . | sort -un)
  stop_pids "the hosts' other processes" "${pids[@]}"
  for i in $hosts; do
    d=$(host_dir "$i")
    ns=$(host_ns "$i")
    if ip netns list 2>/dev/null | grep -E "^$ns( |$)" >/dev/null; then
      ip netns del "$ns"
    fi
    ip link del "$VETH_PREFIX$i" 2>/dev/null || true
    ip link del "$GUEST_VETH_PREFIX$i" 2>/dev/null || true
    if [[ -d $d ]]; then
      # Nothing may be mounted there: removing the tree would go through the mount.
      if grep -q " ${d}[/ ]" /proc/self/mountinfo; then
        die "something is mounted under $d in this mount namespace; not removing it"
      fi
      rm -rf --one-file-system "$d"
    fi
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE"
  fi
  if ip link show "$GUEST_BRIDGE" >/dev/null 2>&1; then
    ip link del "$GUEST_BRIDGE"
  fi
  # `ip netns add` makes /run/netns a mount point when it creates it; undo that if the
  # test bed was first, and no namespace of anyone else's is there now.
  if [[ -f $ROOT/created-run-netns && -d /run/netns && -z $(ls -A /run/netns) ]]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  if [[ -d $ROOT ]]; then
    rm -f "$ROOT/hosts" "$ROOT/created-run-netns"
    rmdir "$ROOT" 2>/dev/null || die "$ROOT is not empty after down: $(ls -A "$ROOT")"
  fi
}

# ---------------------------------------------------------------- up

write_configs() {
  local d=$1
  cat >"$d/etc-libvirt/libvirtd.conf" <<EOF
# Written by flotilla scripts/testbed.sh for one test bed host.
# The sockets live outside the host's mount namespace so that clients anywhere reach them.
unix_sock_dir = "$d/sock"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat >"$d/etc-libvirt/qemu.conf" <<'EOF'
# Written by flotilla scripts/testbed.sh: as scripts/setup-host.sh writes it, and no
# cgroups (the machine's cgroup tree is shared with its own libvirtd and the other hosts).
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
EOF
  chmod 0600 "$d/etc-libvirt/qemu.conf"
}

# The commands run inside host i's namespaces: bind its directories, start its daemons.
# Arguments: the host dir, its daemons' name prefix, then NAME:MOUNTPOINT pairs.
# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -eu
d=$1
tag=$2
shift 2
for m in "$@"; do
  mount --bind "$d/${m%%:*}" "${m#*:}"
done
"$d/bin/$tag-virtlogd" -d -p /run/libvirt/virtlogd.pid </dev/null >>/var/log/libvirt/virtlogd.out 2>&1
"$d/bin/$tag-libvirtd" -d -p /run/libvirt/libvirtd.pid -f /etc/libvirt/libvirtd.conf \
  </dev/null >>/var/log/libvirt/libvirtd.out 2>&1
'

start_host() {
  local i=$1 d ns addr veth m
  d=$(host_dir "$i")
  ns=$(host_ns "$i")
  addr=$(host_addr "$i")
  veth=$VETH_PREFIX$i
  for m in "${MOUNTS[@]}"; do
    mkdir -p "$d/${m%%:*}" "${m#*:}"
  done
  mkdir -p "$d"/etc-libvirt/qemu "$d"/var-lib-libvirt/qemu "$d"/var-cache-libvirt/qemu \
    "$d"/var-log-libvirt/qemu "$d"/sock "$d"/flotilla/images "$d"/bin
  ln -sfn "$(command -v libvirtd)" "$d/bin/$(daemon_name "$i" libvirtd)"
  ln -sfn "$(command -v virtlogd)" "$d/bin/$(daemon_name "$i" virtlogd)"
  chmod 0700 "$d/sock"
  write_configs "$d"
  # The host's own copy of the test images, where its agent and QEMU look for them.
  if [[ -d $IMAGES ]]; then
    cp -a "$IMAGES"/. "$d/flotilla/images/"
  else
    log "warning: no images in $IMAGES (run scripts/build-test-guest.sh): host $i has none"
  fi

  [[ -d /run/netns ]] || touch "$ROOT/created-run-netns"
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  # The guests' bridge, with the host's uplink to the shared guest segment.
  ip -n "$ns" link add "$HOST_BRIDGE" type bridge
  ip link add "$GUEST_VETH_PREFIX$i" type veth peer name uplink netns "$ns"
  ip link set "$GUEST_VETH_PREFIX$i" master "$GUEST_BRIDGE" up
  ip -n "$ns" link set uplink master "$HOST_BRIDGE" up
  ip -n "$ns" link set "$HOST_BRIDGE" up

  # fd 9 (the lock) is closed for the daemons, which outlive this script.
  ip netns exec "$ns" unshare -m --propagation private \
    sh -c "$INNER" testbed-host "$d" "tb$i" "${MOUNTS[@]}" 9>&- ||
    die "host $i: starting its daemons failed (see $d/var-log-libvirt)"
}

# host_ok I: host i's namespace, daemon and socket are all there and libvirtd answers.
host_ok() {
  local d
  d=$(host_dir "$1")
  ip netns list 2>/dev/null | grep -E "^$(host_ns "$1")( |$)" >/dev/null &&
    [[ -n $(libvirtd_pid "$1") ]] &&
    [[ -n $(virtlogd_pid "$1") ]] &&
    [[ -S $(host_sock "$1") ]] &&
    timeout 10 virsh -q -c "$(host_uri "$1")" version >/dev/null 2>&1
}

# wait_hosts DEADLINE I...: waits until each host answers, or fails at DEADLINE (SECONDS).
wait_hosts() {
  local deadline=$1 i pending left
  shift
  pending="$*"
  while [[ -n $pending ]]; do
    left=""
    for i in $pending; do
      host_ok "$i" || left+="$i "
    done
    pending=$left
    [[ -n $pending ]] || return 0
    if ((SECONDS >= deadline)); then
      for i in $pending; do
        log "host $i: libvirtd not answering after ${WAIT_SECS}s; its log:"
        tail -n 20 "$(host_dir "$i")/var-log-libvirt/libvirtd.log" >&2 2>/dev/null || true
        tail -n 20 "$(host_dir "$i")/var-log-libvirt/libvirtd.out" >&2 2>/dev/null || true
      done
      die "test bed not up"
    fi
    sleep 0.2
  done
}

is_up() {
  local n=$1 i
  [[ -f $ROOT/hosts && $(<"$ROOT/hosts") == "$n" ]] || return 1
  ip link show "$BRIDGE" >/dev/null 2>&1 || return 1
  ip link show "$GUEST_BRIDGE" >/dev/null 2>&1 || return 1
  [[ $(known_hosts | tr '\n' ' ') == "$(seq -s ' ' 1 "$n") " ]] || return 1
  for i in $(seq 1 "$n"); do
    host_ok "$i" || return 1
  done
}

up() {
  local n=$1 i deadline cmd
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > MAX_HOSTS)); then
    die "N must be 1..$MAX_HOSTS, got '$n'"
  fi
  if is_up "$n"; then
    log "already up with $n hosts"
    return 0
  fi
  down
  for cmd in ip unshare nsenter virsh libvirtd virtlogd qemu-system-x86_64; do
    command -v "$cmd" >/dev/null || die "$cmd not found (run scripts/setup-host.sh)"
  done
  getent passwd libvirt-qemu >/dev/null || die "no libvirt-qemu user (run scripts/setup-host.sh)"
  mkdir -p "$ROOT"
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip link add "$GUEST_BRIDGE" type bridge
  ip addr add "$GUEST_NET.1/24" dev "$GUEST_BRIDGE"
  ip link set "$GUEST_BRIDGE" up
  # A new libvirtd probes every QEMU binary (seconds each, under emulation) before it
  # answers. Host 1 does; the others start with its results, which hold for them too
  # (same binaries, same machine), and start in parallel.
  deadline=$((SECONDS + WAIT_SECS))
  start_host 1
  wait_hosts "$deadline" 1
  for i in $(seq 2 "$n"); do
    mkdir -p "$(host_dir "$i")/var-cache-libvirt"
    cp -a "$(host_dir 1)/var-cache-libvirt/qemu" "$(host_dir "$i")/var-cache-libvirt/"
    start_host "$i"
  done
  # shellcheck disable=SC2046 # a list of host numbers
  wait_hosts "$deadline" $(seq 1 "$n")
  echo "$n" >"$ROOT/hosts"
  log "up: $n hosts on $BRIDGE ($NET.0/24)"
}

# ---------------------------------------------------------------- restart-libvirtd

# restart_libvirtd I: host i's own libvirtd (never the machine's) stopped by its pid
# file and started again in the host's namespaces, which its virtlogd keeps; its QEMUs
# run on, as they do across a real daemon restart.
restart_libvirtd() {
  local i=$1 d pid logpid deadline
  [[ $i =~ ^[0-9]+$ ]] || die "I must be a host number, got '$i'"
  d=$(host_dir "$i")
  pid=$(libvirtd_pid "$i")
  logpid=$(virtlogd_pid "$i")
  [[ -n $pid && -n $logpid ]] || die "host $i is not up"
  stop_pids "host $i's libvirtd" "$pid"
  nsenter --target "$logpid" --mount --net -- "$d/bin/$(daemon_name "$i" libvirtd)" \
    -d -p /run/libvirt/libvirtd.pid -f /etc/libvirt/libvirtd.conf \
    </dev/null >>"$d/var-log-libvirt/libvirtd.out" 2>&1 9>&- ||
    die "host $i: starting its libvirtd again failed (see $d/var-log-libvirt)"
  deadline=$((SECONDS + WAIT_SECS))
  wait_hosts "$deadline" "$i"
  log "host $i: libvirtd restarted (pid $(libvirtd_pid "$i"))"
}

# ---------------------------------------------------------------- status

status() {
  local n=0 ok=1 i d hosts
  [[ -f $ROOT/hosts ]] && n=$(<"$ROOT/hosts")
  hosts=$(known_hosts)
  if [[ -z $hosts ]] && ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    echo "down"
    return 1
  fi
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    echo "bridge name=$BRIDGE addr=$NET.1 net=$NET.0/24"
  else
    echo "bridge name=$BRIDGE missing"
    ok=0
  fi
  ((n > 0)) || ok=0
  [[ $(echo "$hosts" | tr '\n' ' ') == "$(seq -s ' ' 1 "$n") " ]] || ok=0
  for i in $hosts; do
    d=$(host_dir "$i")
    local state=ok
    host_ok "$i" || { state=broken; ok=0; }
    echo "host id=$i state=$state ns=$(host_ns "$i") addr=$(host_addr "$i") socket=$(host_sock "$i")" \
      "dir=$d libvirtd=$(libvirtd_pid "$i") virtlogd=$(virtlogd_pid "$i")"
  done
  ((ok))
}

# ---------------------------------------------------------------- main

[[ $# -ge 1 ]] || usage
[[ $(id -u) -eq 0 ]] || die "must run as root"
# One run at a time; fd 9 is closed for the daemons we start.
mkdir -p /run/lock
exec 9>/run/lock/flotilla-testbed.lock
flock 9

case $1 in
  up)
    [[ $# -eq 2 ]] || usage
    up "$2"
    ;;
  down)
    [[ $# -eq 1 ]] || usage
    down
    log "down"
    ;;
  status)
    [[ $# -eq 1 ]] || usage
    status
    ;;
  restart-libvirtd)
    [[ $# -eq 2 ]] || usage
    restart_libvirtd "$2"
    ;;
  *) usage ;;
esac
