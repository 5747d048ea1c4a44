#!/usr/bin/env bash
# Sets up this (Debian 12) machine as a libvirt/QEMU hypervisor host for flotilla.
#
#   - installs libvirt + QEMU + the tools the test-guest build needs (apt-get update only
#     when something is missing)
#   - creates the libvirt-qemu system user/group and libvirt's runtime directories
#   - writes /etc/libvirt/qemu.conf (run QEMU as root, no ownership games, no security
#     driver); restarts a running libvirtd whose config is older than that file
#   - starts virtlogd and libvirtd as plain daemons (or via systemd, if it is PID 1 and
#     libvirt-daemon-system's units are installed), restarting any that died
#   - waits (bounded) until `virsh -c qemu:///system version` answers
#
# Idempotent: a second run on a ready host only checks and exits in well under a second.
# Must run as root. Dev/CI machines have no hardware KVM (at most a paravirtual /dev/kvm that
# cannot boot an ordinary guest): the driver then picks type='qemu' on its own.
set -euo pipefail

log() { echo "setup-host: $*" >&2; }
die() { echo "setup-host: ERROR: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root"

# One run at a time (fd 8 is closed for the daemons we start, so they don't hold it).
mkdir -p /run/lock
exec 8>/run/lock/flotilla-setup-host.lock
flock 8

export DEBIAN_FRONTEND=noninteractive
URI=qemu:///system
SOCK=/var/run/libvirt/libvirt-sock
QEMU_CONF=/etc/libvirt/qemu.conf
LIBVIRTD_PID=/run/libvirtd.pid
VIRTLOGD_PID=/run/virtlogd.pid
WAIT_SECS=${FLOTILLA_LIBVIRT_WAIT_SECS:-30}

PACKAGES=(
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  dnsmasq-base iptables  # libvirt's nat and isolated networks: DHCP/DNS and their firewall rules
  libxml2-utils  # xmllint, which libvirt-clients' virt-xml-validate runs (not a dependency)
  qemu-system-x86 qemu-utils
  cpio busybox-static xz-utils zstd kmod
  iproute2 procps passwd
  iputils-ping  # the test bed's hosts ping each other (scripts/testbed.sh)
  rsync  # bench/cmd/flotilla-xfer-bench compares disk copies with rsync --sparse
  openssh-server  # ... over ssh too; the bench runs its own sshd, the system's is not started
  systemd  # systemd-analyze verify checks packaging/systemd's units (packaging tests)
)

# ---------------------------------------------------------------- packages
declare -A installed=()
while read -r p st; do
  if [[ $st == ii ]]; then installed[${p%%:*}]=1; fi
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
  [[ -n ${installed[$p]:-} ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  apt-get update -qq
  # Packages that ship a daemon (openssh-server) must not start it: a
  # policy-rc.d that says no, for the install only (unless one is there).
  policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null
  [[ -z $policy ]] || rm -f "$policy"
fi

# ---------------------------------------------------------------- user, group, dirs
if ! getent group libvirt-qemu >/dev/null; then
  log "creating group libvirt-qemu"
  groupadd --system libvirt-qemu
fi
if ! getent passwd libvirt-qemu >/dev/null; then
  log "creating user libvirt-qemu"
  useradd --system --gid libvirt-qemu --no-create-home --home-dir /var/lib/libvirt \
    --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
fi
mkdir -p /var/log/libvirt/qemu /run/libvirt /var/lib/libvirt/qemu /var/cache/libvirt/qemu

# ---------------------------------------------------------------- qemu.conf
want_conf='# Written by flotilla scripts/setup-host.sh -- local edits are overwritten.
# QEMU runs as root with no ownership changes and no security driver: the hosts are
# throw-away dev/CI machines (no systemd, no AppArmor/SELinux, no hardware KVM).
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
'
conf_changed=0
if [[ ! -f $QEMU_CONF ]] || [[ "$(cat "$QEMU_CONF")"$'\n' != "$want_conf" ]]; then
  log "writing $QEMU_CONF"
  mkdir -p "$(dirname "$QEMU_CONF")"
  [[ -f $QEMU_CONF && ! -f $QEMU_CONF.dist ]] && cp -p "$QEMU_CONF" "$QEMU_CONF.dist"
  tmp=$(mktemp "$QEMU_CONF.XXXXXX")
  printf '%s' "$want_conf" >"$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$QEMU_CONF"
  conf_changed=1
fi

# ---------------------------------------------------------------- daemons
# pid of a running daemon NAME (from its pidfile, else pgrep), or nothing.
daemon_pid() {
  local name=$1 pidfile=$2 pid=""
  if [[ -r $pidfile ]]; then
    pid=$(<"$pidfile")
    if [[ -n $pid && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]; then
      echo "$pid"; return
    fi
  fi
  pgrep -x -o "$name" || true
}

# start time of process PID, in seconds since the epoch.
proc_start_epoch() {
  local stat btime hz
  stat=$(</proc/"$1"/stat)
  stat=${stat##*) }                       # drop "pid (comm) ", fields now start at #3
  btime=$(awk '/^btime/ {print $2}' /proc/stat)
  hz=$(getconf CLK_TCK)
  echo $((btime + $(awk '{print $20}' <<<"$stat") / hz))
}

if [[ -d /run/systemd/system ]] && systemctl cat libvirtd.service >/dev/null 2>&1; then
  use_systemd=1 # systemd is PID 1 and libvirt-daemon-system's units are installed: use them.
else
  use_systemd=0 # no systemd (dev/CI machines) or no units: run the daemons directly.
fi

# Starts whichever daemon is not running. Safe to call repeatedly: a daemon that is still
# shutting down (or a start that lost a race) is simply retried on the next call.
ensure_daemons() {
  if ((use_systemd)); then
    systemctl start virtlogd.socket virtlogd.service libvirtd.service >/dev/null 2>&1 || true
    return
  fi
  if [[ -z $(daemon_pid virtlogd "$VIRTLOGD_PID") ]]; then
    log "starting virtlogd"
    virtlogd -d 8>&- || true
  fi
  if [[ -z $(daemon_pid libvirtd "$LIBVIRTD_PID") ]]; then
    log "starting libvirtd"
    # Log to a file: there is no journald/syslog to catch it otherwise.
    LIBVIRT_LOG_OUTPUTS="${LIBVIRT_LOG_OUTPUTS:-3:file:/var/log/libvirt/libvirtd.log}" \
      libvirtd -d 8>&- || true
  fi
}

# Restart a libvirtd that read an older qemu.conf.
if ((use_systemd)); then
  if ((conf_changed)); then
    log "restarting libvirtd (systemd) for new $QEMU_CONF"
    systemctl restart libvirtd.service
  fi
else
  pid=$(daemon_pid libvirtd "$LIBVIRTD_PID")
  if [[ -n $pid ]] && { ((conf_changed)) ||
    (($(stat -c %Y "$QEMU_CONF") > $(proc_start_epoch "$pid"))); }; then
    log "restarting libvirtd (pid $pid) for new $QEMU_CONF"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "libvirtd (pid $pid) did not exit within 10s"
  fi
fi

# ---------------------------------------------------------------- start, wait until usable
deadline=$((SECONDS + WAIT_SECS))
ensure_daemons
until [[ -S $SOCK ]] && virsh -q -c "$URI" version >/dev/null 2>&1; do
  if ((SECONDS >= deadline)); then
    echo "setup-host: ERROR: libvirt not usable after ${WAIT_SECS}s" >&2
    ls -l "$SOCK" >&2 || true
    virsh -c "$URI" version >&2 || true
    tail -n 30 /var/log/libvirt/libvirtd.log >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.2
  ensure_daemons
done
log "ok: $(virsh -c "$URI" version 2>/dev/null | grep -E 'hypervisor' | tr -s ' ')"
