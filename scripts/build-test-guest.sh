#!/usr/bin/env bash
# Builds the tiny "flotilla-test" guest image, once:
#
#   $IMAGE_DIR/flotilla-test/
#     vmlinuz      Debian's linux-image-6.1.*-cloud-amd64 kernel (newest apt knows; the
#                  package is downloaded and unpacked, never installed)
#     initrd.img   gzip'd cpio (newc): busybox-static + the kernel's virtio (blk, console,
#                  net), button/evdev and isofs modules + an /init that prints
#                  FLOTILLA-GUEST-READY on ttyS0, speaks the guest channel protocol v2
#                  (docs/guest-channel.md) on the virtio-serial port org.flotilla.guest.0 if
#                  there is one, and powers off (FLOTILLA-GUEST-POWEROFF) when the ACPI
#                  power button is pressed (virsh shutdown). /init stays PID 1 forever.
#     disk.qcow2   64 MiB empty qcow2 base disk (boot needs none; the control plane puts a
#                  copy-on-write overlay on it)
#     cmdline      kernel command line, one line
#     .complete    written last; an image dir without it is never used
#
# Before READY, /init (via /etc/flotilla/net.sh) also:
#   - reads a cloud-init NoCloud seed if one is attached (an ISO9660 disk, volume id
#     "cidata", usually /dev/vdb): instance-id and local-hostname from meta-data;
#   - sets the hostname: local-hostname, else the hostname field of the kernel's
#     ip= argument, else "flotilla-test";
#   - brings up lo and, if eth0 exists, configures it by DHCP (udhcpc, ~3 s at most), else
#     from ip=<ip>::<gw>:<netmask>:<hostname>:eth0:off[:<dns0>[:<dns1>]] on the kernel
#     command line, else leaves it without an address; then serves HTTP on port 80 and
#     prints one line: FLOTILLA-GUEST-NET ip=<a.b.c.d/len|none> via=<dhcp|cmdline|none>
#     hostname=<h>. A guest without a NIC prints no such line and is READY as fast as before.
#   HTTP: GET /  -> "flotilla-test hostname=<h> instance=<id|unknown> ip=<a.b.c.d|none>"
#         GET /cgi-bin/get?<a.b.c.d> -> the body of http://<a.b.c.d>/ fetched from inside
#         the guest (5 s timeout), or 502 and a line "ERROR ..."; 400 if the query
#         is not a dotted IPv4 address. Tests use it to prove one guest reaches another.
#
# Guest channel (v2, docs/guest-channel.md), from a background writer/reader: the port's
# writes block until the host connects. "HELLO flotilla-guest/2 test-6 <boot id>" once the port
# is open, "BOOT network" when net.sh starts, "BOOT http" when it starts httpd, "READY" when the
# page answers (right after net.sh without a NIC); "PING n" is answered "PONG n", and "PING 1"
# (a host's first on each connection) makes the guest say its HELLO and latest line again.
# Commands ("CMD n verb args", each run in the background, answered "DONE n ..." or
# "FAIL n reason"):
#   osinfo                  DONE n flotilla-test 6 <uname -r>
#   password USER HEX       sets USER's password (hex-encoded) in /etc/shadow (root is the one
#                           user: another is "FAIL n no-such-user"), checks it back from
#                           /etc/shadow and prints FLOTILLA-GUEST-PASSWORD user=<u>
#                           verified=<yes|no> sha256=<sha256 of the password>
#   decommission SECONDS    runs its "decommission scripts": prints FLOTILLA-GUEST-DECOMMISSIONING,
#                           ~1 s later FLOTILLA-GUEST-DECOMMISSIONED and DONE
#   anything else           FAIL n unknown-command
# Test switches, lines of the seed's user-data:
#   flotilla-test: fail     "FAILED boot-script" instead of READY
#   flotilla-test: slow=N   READY N seconds later
#   flotilla-test: silent   never opens the channel
#   flotilla-test: v1       speaks protocol v1: "HELLO flotilla-guest/1 test-6", takes no commands
#   flotilla-test: flood    after HELLO, garbage, unknown verbs, over-long lines and lies (replies
#                           to no command, another boot's HELLO) as fast as it can, then (after
#                           3 s) the usual lines
#   flotilla-test: unresponsive=N   stops answering PINGs N seconds after READY
#   flotilla-test: decommission=fail     FAIL n decommission-script
#   flotilla-test: decommission=hang     never answers a decommission
#   flotilla-test: decommission=slow=N   answers DONE N seconds late
#   flotilla-test: disk-marker=V         writes "FLOTMARK:V" at 1 MiB of /dev/vda before READY
# Disk (recipe 8): at boot the guest prints FLOTILLA-GUEST-DISK dev=vda marker=<V|none>
# rescued=<yes|no> (the marker at 1 MiB; "yes" once a rescue system marked the disk). With
# flotilla.rescue=1 on the kernel command line (RescueInstance adds it) it is a rescue system:
# it prints FLOTILLA-GUEST-RESCUE and FLOTILLA-GUEST-DISK dev=vdb marker=<V|none> for the
# instance's disk attached second, and writes "FLOTRESC:yes" at 2 MiB of it.
# The console lines (FLOTILLA-GUEST-READY, -NET, -SHAPE, -POWEROFF) do not depend on them.
#
# IMAGE_DIR is ${FLOTILLA_IMAGE_DIR:-/var/lib/flotilla/images}. Idempotent: exits at once when
# the image is complete and was built by this recipe version; FLOTILLA_REBUILD=1 forces a
# rebuild. The guest boots under plain TCG (domain type='qemu', machine 'pc', <acpi/>).
set -euo pipefail

log() { echo "build-test-guest: $*" >&2; }
die() { echo "build-test-guest: ERROR: $*" >&2; exit 1; }

# Bump when the image contents change, so existing images get rebuilt.
RECIPE=8 # bump when the image's contents change: built images are replaced
NAME=flotilla-test
IMAGE_DIR=${FLOTILLA_IMAGE_DIR:-/var/lib/flotilla/images}
DEST=$IMAGE_DIR/$NAME
FILES=(vmlinuz initrd.img disk.qcow2 cmdline)
CMDLINE="console=ttyS0 panic=-1 quiet"
# Modules the guest needs, in load order; dependencies are added from modules.dep and
# any that are built into the kernel are skipped.
# virtio_net brings net_failover/failover; isofs reads the NoCloud seed (nls_utf8 for a
# Joliet-only one).
WANT_MODULES=(virtio virtio_ring virtio_pci virtio_blk virtio_console button evdev
  virtio_net isofs nls_utf8)

is_complete() {
  [[ -f $DEST/.complete ]] || return 1
  grep -qx "recipe=$RECIPE" "$DEST/.complete" || return 1
  local f
  for f in "${FILES[@]}"; do [[ -s $DEST/$f ]] || return 1; done
}

if [[ ${FLOTILLA_REBUILD:-0} != 1 ]] && is_complete; then
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get download, mknod)"
mkdir -p "$IMAGE_DIR"

# One build at a time; re-check after getting the lock (another run may have finished it).
exec 9>"$IMAGE_DIR/.$NAME.lock"
flock 9
if [[ ${FLOTILLA_REBUILD:-0} != 1 ]] && is_complete; then
  exit 0
fi

# ---------------------------------------------------------------- tools
export DEBIAN_FRONTEND=noninteractive
need=()
for pc in busybox-static:/bin/busybox cpio:cpio qemu-utils:qemu-img kmod:depmod \
  xz-utils:xz zstd:zstd gzip:gzip; do
  cmd=${pc#*:}
  if [[ $cmd == /* ]]; then [[ -x $cmd ]] || need+=("${pc%%:*}")
  else command -v "$cmd" >/dev/null || need+=("${pc%%:*}"); fi
done
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

WORK=$(mktemp -d /tmp/flotilla-guest-build.XXXXXX)
STAGE=$(mktemp -d "$IMAGE_DIR/.$NAME.tmp.XXXXXX")
cleanup() { rm -rf "$WORK" "$STAGE"; }
trap cleanup EXIT

# ---------------------------------------------------------------- kernel
pick_kernel() {
  apt-cache pkgnames linux-image-6.1. 2>/dev/null |
    grep -E '^linux-image-6\.1\.[0-9]+-[0-9]+-cloud-amd64$' | sort -rV
}
candidates=$(pick_kernel)
if [[ -z $candidates ]]; then
  apt-get update -qq
  candidates=$(pick_kernel)
fi
[[ -n $candidates ]] || die "apt knows no linux-image-6.1.*-cloud-amd64 package"

KPKG=""
for p in $candidates; do
  # newest first; skip names apt knows but has no downloadable version of
  if (cd "$WORK" && apt-get download -qq -o APT::Sandbox::User=root "$p" >/dev/null 2>&1); then
    KPKG=$p
    break
  fi
done
[[ -n $KPKG ]] || die "could not download any of: ${candidates//$'\n'/ }"
KDEB=$(ls "$WORK"/"$KPKG"_*.deb)
KPKG_VERSION=$(dpkg-deb -f "$KDEB" Version)
KVER=${KPKG#linux-image-}
log "kernel: $KPKG $KPKG_VERSION"

dpkg-deb -x "$KDEB" "$WORK/kroot"
[[ -d $WORK/kroot/lib/modules/$KVER ]] || die "no lib/modules/$KVER in $KPKG"
MODDIR=$WORK/kroot/lib/modules/$KVER
cp "$WORK/kroot/boot/vmlinuz-$KVER" "$STAGE/vmlinuz"
# The package ships no modules.dep (its postinst runs depmod): generate one in the scratch copy.
[[ -f $MODDIR/modules.dep ]] || depmod -b "$WORK/kroot" "$KVER"

# ---------------------------------------------------------------- initramfs
ROOT=$WORK/initramfs
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc/flotilla,lib/modules,www/cgi-bin}
cp /bin/busybox "$ROOT/bin/busybox"
while read -r applet; do
  [[ $applet == bin/busybox ]] && continue
  [[ -e $ROOT/$applet ]] || ln -s /bin/busybox "$ROOT/$applet"
done < <(/bin/busybox --list-full)
[[ -e $ROOT/bin/sh ]] || ln -s /bin/busybox "$ROOT/bin/sh"
mknod -m 600 "$ROOT/dev/console" c 5 1
mknod -m 666 "$ROOT/dev/null" c 1 3
mknod -m 600 "$ROOT/dev/ttyS0" c 4 64
# root is the one user (SetPassword sets its password; "*" until then: no login).
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
echo 'root:*:19000:0:99999:7:::' >"$ROOT/etc/shadow"
chmod 600 "$ROOT/etc/shadow"

norm() { local b=${1##*/}; b=${b%%.ko*}; echo "${b//-/_}"; }
declare -A builtin=() modpath=() seen=()
while read -r l; do builtin[$(norm "$l")]=1; done <"$MODDIR/modules.builtin"
while IFS=: read -r m _; do modpath[$(norm "$m")]=$m; done <"$MODDIR/modules.dep"

load_order=()
BUILTIN_FOUND=()
add_module() { # add M after its dependencies (modules.dep lists them nearest-first)
  local m=$1 line deps i
  [[ -n ${seen[$m]:-} ]] && return
  seen[$m]=1
  if [[ -n ${builtin[$m]:-} ]]; then BUILTIN_FOUND+=("$m"); return; fi
  [[ -n ${modpath[$m]:-} ]] || die "module $m is neither built in nor in $KPKG"
  line=$(grep -m1 "^${modpath[$m]}:" "$MODDIR/modules.dep")
  read -r -a deps <<<"${line#*:}"
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add_module "$(norm "${deps[i]}")"; done
  load_order+=("$m")
}
for m in "${WANT_MODULES[@]}"; do add_module "$m"; done

for m in "${load_order[@]}"; do
  src=$MODDIR/${modpath[$m]}
  case $src in
    *.ko) cp "$src" "$ROOT/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$src" >"$ROOT/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$ROOT/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$ROOT/lib/modules/$m.ko" ;;
    *) die "unexpected module file $src" ;;
  esac
done
printf '%s\n' "${load_order[@]}" >"$ROOT/etc/modules"
log "modules built in: ${BUILTIN_FOUND[*]:-none}; loaded by /init: ${load_order[*]}"

cat >"$ROOT/init" <<'INIT'
#!/bin/sh
# flotilla test guest: PID 1, never exits.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts /dev/input
[ -c /dev/console ] || mknod -m 600 /dev/console c 5 1
[ -c /dev/null ] || mknod -m 666 /dev/null c 1 3
# stdout/stderr already go to the console (console=ttyS0).

for m in $(cat /etc/modules); do
  insmod "/lib/modules/$m.ko" 2>/dev/null || echo "flotilla-init: insmod $m failed" 
done

. /etc/flotilla/lib.sh

# Make sure a char device node exists for /sys/class/<class>/<name>; print its path.
devnode() { # $1 = sysfs class dir entry, $2 = /dev path
  if [ ! -c "$2" ] && [ -r "$1/dev" ]; then
    IFS=: read -r maj min <"$1/dev"
    mknod -m 600 "$2" c "$maj" "$min"
  fi
  echo "$2"
}

# NoCloud seed: an ISO9660 disk whose volume id (32 bytes at 0x8028) is "cidata", mounted
# on /run/seed (net.sh reads meta-data, the switches below user-data).
for b in /sys/block/vd* /sys/block/xvd*; do
  dev=/dev/${b##*/}
  [ -b "$dev" ] || continue
  vol=$(dd if="$dev" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' \000' | tr A-Z a-z)
  [ "$vol" = cidata ] || continue
  mkdir -p /run/seed
  mount -t iso9660 -o ro "$dev" /run/seed || echo "flotilla-init: cannot mount seed $dev"
  break
done

# Test switches: "flotilla-test: <switch>" lines of the seed's user-data.
t_fail="" t_slow=0 t_silent="" t_flood="" t_v1="" t_unresp="" t_decom="" t_marker=""
cr=$(printf '\r')
if [ -r /run/seed/user-data ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%"$cr"}
    case $line in
      "flotilla-test: fail") t_fail=1 ;;
      "flotilla-test: silent") t_silent=1 ;;
      "flotilla-test: flood") t_flood=1 ;;
      "flotilla-test: v1") t_v1=1 ;;
      "flotilla-test: decommission="*) t_decom=${line#*decommission=} ;;
      "flotilla-test: disk-marker="*) t_marker=${line#*disk-marker=} ;;
      "flotilla-test: unresponsive="*)
        n=${line#*unresponsive=}
        case $n in '' | *[!0-9]*) ;; *) t_unresp=$n ;; esac
        ;;
      "flotilla-test: slow="*)
        n=${line#*slow=}
        case $n in '' | *[!0-9]*) ;; *) t_slow=$n ;; esac
        ;;
    esac
  done </run/seed/user-data
fi

# Disk marker: a line "FLOTMARK:<value>" at 1 MiB of the disk (the guest mounts nothing, so
# this is how a test leaves and finds a pattern on it), and "FLOTRESC:yes" at 2 MiB once a
# rescue system wrote it. Booted with flotilla.rescue=1 (a rescue), the guest is the rescue
# system: the instance's own disk is its second disk (vdb), which it reads and marks.
disk_line() { # $1 = device, $2 = sector: the marker line there, without its tag
  dd if="$1" bs=512 skip="$2" count=1 2>/dev/null | tr -d '\000' | head -n1 | sed -n "s/^$3//p"
}
rescue=""
for arg in $(cat /proc/cmdline); do [ "$arg" = flotilla.rescue=1 ] && rescue=1; done
if [ -n "$rescue" ]; then
  echo "FLOTILLA-GUEST-RESCUE"
  if [ -b /dev/vdb ]; then
    m=$(disk_line /dev/vdb 2048 FLOTMARK:)
    echo "FLOTILLA-GUEST-DISK dev=vdb marker=${m:-none}"
    printf 'FLOTRESC:yes\n' | dd of=/dev/vdb bs=512 seek=4096 conv=notrunc,sync 2>/dev/null
    sync
  fi
elif [ -b /dev/vda ]; then
  if [ -n "$t_marker" ]; then
    printf 'FLOTMARK:%s\n' "$t_marker" | dd of=/dev/vda bs=512 seek=2048 conv=notrunc,sync 2>/dev/null
    sync
  fi
  m=$(disk_line /dev/vda 2048 FLOTMARK:)
  r=$(disk_line /dev/vda 4096 FLOTRESC:)
  echo "FLOTILLA-GUEST-DISK dev=vda marker=${m:-none} rescued=${r:-no}"
fi

# flood: what a hostile guest might write; the host must drop it all and carry on.
# About 450 lines' worth (an over-long line counts once per 512 bytes): enough for the host
# to cut the guest off once, not so much that its back-off grows long.
gc_flood() {
  long=$(head -c 300 /dev/zero | tr '\000' x)
  head -c 4000 /dev/zero | tr '\000' y
  echo
  i=0
  while [ $i -lt 100 ]; do
    echo "BOOT $long"
    echo "NONSENSE $i"
    echo "READY now"
    head -c 64 /dev/urandom
    echo
    i=$((i + 1))
  done
  # Lies: replies to commands nobody sent, and a HELLO of another boot (valid: it only ever
  # speaks for this guest, whose usual lines follow).
  echo "DONE 1 flotilla-test 6 lie"
  echo "FAIL 2 lie"
  echo "HELLO flotilla-guest/2 evil not-a-boot-id"
}

# The host (agent) side of the channel: HELLO, then the queue (gc_send) forwarded, and a
# reader answering PINGs. The port's writes block until the host connects, hence a
# background process; the port can be open only once, so it is opened once, here.
gc_channel() {
  exec 4<>/run/gc.fifo
  port="" i=0
  while [ -z "$port" ] && [ $i -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
      [ -r "$p/name" ] || continue
      if [ "$(cat "$p/name")" = "org.flotilla.guest.0" ]; then
        port=$(devnode "$p" "/dev/${p##*/}")
        break
      fi
    done
    [ -n "$port" ] && break
    i=$((i + 1))
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "flotilla-init: no guest channel port"
    exec cat <&4 >/dev/null # keep the queue drained: gc_send never blocks
  fi
  exec 3<>"$port"
  gc_reader <&3 &
  cat /run/gc.hello >&3
  if [ -n "$t_flood" ]; then
    gc_flood >&3
    sleep 3 # let the host's rate limit refill: the lines that follow count
  fi
  exec cat <&4 >&3
}

# gc_reader reads the host's lines: "PING n" is answered "PONG n". A host counts its PINGs
# from 1 on each connection, so after "PING 1" the HELLO and the latest line are said again:
# the host may be new (an agent restarted, say) and must hear where this boot is. A v2 guest
# runs the host's commands ("CMD n verb args"). A read at end of file means no host is
# connected.
gc_reader() {
  while :; do
    if read -r verb arg; then
      case $verb in
        PING) case $arg in '' | *[!0-9]*) ;; *)
          [ -e /run/gc.mute ] && continue
          gc_send "PONG $arg"
          [ "$arg" = 1 ] && gc_send ""
          ;;
        esac ;;
        CMD) [ -z "$t_v1" ] && gc_command $arg & ;;
      esac
    else
      sleep 1
    fi
  done
}

# gc_command N VERB ARGS...: one host command, answered DONE or FAIL.
gc_command() {
  n=$1 verb=$2
  case $n in '' | *[!0-9]*) return ;; esac
  shift 2
  case $verb in
    osinfo) gc_send "DONE $n flotilla-test 6 $(uname -r)" ;;
    password)
      user=$1 hex=$2
      case $hex in '' | *[!0-9a-f]*) gc_send "FAIL $n bad-password"; return ;; esac
      grep -q "^$user:" /etc/passwd 2>/dev/null && [ "$user" = root ] || { gc_send "FAIL $n no-such-user"; return; }
      pw=$(printf "$(echo "$hex" | sed 's/../\\x&/g')")
      hash=$(mkpasswd -m sha512 "$pw")
      until mkdir /run/shadow.lock 2>/dev/null; do sleep 0.05; done
      sed "s|^$user:[^:]*:|$user:$hash:|" /etc/shadow >/etc/shadow.new && mv /etc/shadow.new /etc/shadow
      rmdir /run/shadow.lock
      stored=$(grep "^$user:" /etc/shadow | cut -d: -f2)
      salt=$(echo "$stored" | cut -d'$' -f3)
      ok=no
      [ "$(mkpasswd -m sha512 -S "$salt" "$pw")" = "$stored" ] && ok=yes
      echo "FLOTILLA-GUEST-PASSWORD user=$user verified=$ok sha256=$(printf '%s' "$pw" | sha256sum | cut -d' ' -f1)"
      if [ $ok = yes ]; then gc_send "DONE $n"; else gc_send "FAIL $n not-stored"; fi
      ;;
    decommission)
      echo "FLOTILLA-GUEST-DECOMMISSIONING"
      case $t_decom in
        fail) sleep 1; echo "FLOTILLA-GUEST-DECOMMISSION-FAILED"; gc_send "FAIL $n decommission-script" ;;
        hang) ;;
        slow=*) sleep "${t_decom#slow=}"; echo "FLOTILLA-GUEST-DECOMMISSIONED"; gc_send "DONE $n" ;;
        *) sleep 1; echo "FLOTILLA-GUEST-DECOMMISSIONED"; gc_send "DONE $n" ;;
      esac
      ;;
    *) gc_send "FAIL $n unknown-command" ;;
  esac
}

if [ -z "$t_silent" ]; then
  if [ -n "$t_v1" ]; then
    echo "HELLO flotilla-guest/1 test-6" >/run/gc.hello
  else
    echo "HELLO flotilla-guest/2 test-6 $(cat /proc/sys/kernel/random/boot_id)" >/run/gc.hello
  fi
  cp /run/gc.hello /run/gc.state
  mkfifo /run/gc.fifo
  gc_channel &
fi

# Seed, hostname, address and HTTP page, beside the power-button search below; READY waits
# for it, so a guest that has said READY answers HTTP. Without a NIC it takes milliseconds.
/etc/flotilla/net.sh &
net=$!

# Listen for the ACPI power button first, and only then say READY: a press
# that arrives after READY must never be lost.
pwr=""
i=0
while [ -z "$pwr" ]; do
  for e in /sys/class/input/event*; do
    [ -r "$e/device/name" ] || continue
    if [ "$(cat "$e/device/name")" = "Power Button" ]; then
      pwr=$(devnode "$e" "/dev/input/${e##*/}")
      break
    fi
  done
  if [ -z "$pwr" ]; then
    i=$((i + 1))
    [ $i -eq 50 ] && echo "flotilla-init: no Power Button input device yet"
    sleep 0.1
  fi
done
# evdev reads whole events (24 bytes each): one read returns at the first key event.
(
  until dd if="$pwr" of=/dev/null bs=4096 count=1 2>/dev/null; do sleep 1; done
  echo "FLOTILLA-GUEST-POWEROFF"
  sync
  poweroff -f
) &
sleep 0.3 # let the reader open the device before anyone is told to press
wait "$net"

echo "FLOTILLA-GUEST-READY"
(
  if [ -n "$t_fail" ]; then
    gc_send "FAILED boot-script"
  else
    [ "$t_slow" -gt 0 ] && sleep "$t_slow"
    gc_send READY
  fi
  if [ -n "$t_unresp" ]; then
    sleep "$t_unresp"
    touch /run/gc.mute
  fi
) &

# Report the guest's shape at boot and whenever the disk's size changes (a
# live grow): FLOTILLA-GUEST-SHAPE vcpus=N mem_kib=N disk_bytes=N.
(
  last=""
  while :; do
    sz=0
    for b in /sys/block/vda /sys/block/xvda; do
      [ -r "$b/size" ] && { read -r sz <"$b/size"; break; }
    done
    if [ "$sz" != "$last" ]; then
      mem=0
      while read -r k v _; do [ "$k" = "MemTotal:" ] && mem=$v; done </proc/meminfo
      echo "FLOTILLA-GUEST-SHAPE vcpus=$(nproc) mem_kib=$mem disk_bytes=$((sz * 512))"
      last=$sz
    fi
    sleep 0.5
  done
) &

while :; do sleep 3600; done
INIT
chmod 755 "$ROOT/init"

# Shared by net.sh and the CGI script.
cat >"$ROOT/etc/flotilla/lib.sh" <<'LIB'
# is_ipv4 A: A is a dotted IPv4 address (four decimal octets 0-255).
is_ipv4() {
  case $1 in '' | *[!0-9.]* | .* | *. | *..*) return 1 ;; esac
  local IFS=. o
  set -- $1
  [ $# -eq 4 ] || return 1
  for o; do [ ${#o} -le 3 ] && [ "$o" -le 255 ] || return 1; done
}

# gc_send LINE: queue LINE for the host on the guest channel (nothing when the channel is
# off); every line but PONG, DONE and FAIL is also kept as the latest, and "" says the HELLO
# (protocol v2) and the latest again. The lock (mkdir is atomic) keeps a repeat from
# overtaking a newer line.
gc_send() {
  [ -p /run/gc.fifo ] || return 0
  until mkdir /run/gc.lock 2>/dev/null; do sleep 0.05; done
  case $1 in
    PONG* | DONE* | FAIL\ *) echo "$1" >/run/gc.fifo ;;
    "")
      case $(cat /run/gc.hello) in
        *flotilla-guest/1*) cat /run/gc.state ;;
        *) cat /run/gc.hello && cmp -s /run/gc.hello /run/gc.state || cat /run/gc.state ;;
      esac >/run/gc.fifo
      ;;
    *) echo "$1" >/run/gc.state && echo "$1" >/run/gc.fifo ;;
  esac
  rmdir /run/gc.lock
}
LIB

cat >"$ROOT/etc/flotilla/net.sh" <<'NET'
#!/bin/sh
# Run once by /init before READY: NoCloud seed, hostname, eth0's address, HTTP page.
# (The kernel passes unknown name=value arguments such as ip= to init as environment
# variables, so this script keeps to names of its own.)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/flotilla/lib.sh
gc_send "BOOT network"
ip link set lo up

# ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>[:<dns0>[:<dns1>]]
c_addr="" c_gw="" c_mask="" c_host="" c_dev="" c_dns0="" c_dns1=""
for arg in $(cat /proc/cmdline); do
  case $arg in
    ip=*:*) IFS=: read -r c_addr _ c_gw c_mask c_host c_dev _ c_dns0 c_dns1 _ <<EOF
${arg#ip=}
EOF
      ;;
  esac
done

# NoCloud seed, mounted by /init if attached.
seed_iid="" seed_host=""
if [ -r /run/seed/meta-data ]; then
  # simple "key: value" lines; quotes and surrounding blanks dropped
  while IFS= read -r line || [ -n "$line" ]; do
    val=$(echo "${line#*:}" | tr -d '\r' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
      -e "s/^[\"']\(.*\)[\"']\$/\1/")
    case $line in
      instance-id:*) seed_iid=$val ;;
      local-hostname:*) seed_host=$val ;;
    esac
  done </run/seed/meta-data
fi
name=${seed_host:-${c_host:-flotilla-test}}
hostname "$name"
echo "$name" >/etc/hostname

[ -e /sys/class/net/eth0 ] || exit 0

mask_len() { # dotted netmask or prefix length -> prefix length
  case $1 in *.*) ;; *) echo "$1"; return ;; esac
  local IFS=. o n=0
  for o in $1; do
    case $o in
      255) n=$((n + 8)) ;; 254) n=$((n + 7)) ;; 252) n=$((n + 6)) ;; 248) n=$((n + 5)) ;;
      240) n=$((n + 4)) ;; 224) n=$((n + 3)) ;; 192) n=$((n + 2)) ;; 128) n=$((n + 1)) ;;
    esac
  done
  echo "$n"
}

addr=none via=none
ip link set eth0 up
rm -f /run/dhcp-address
if udhcpc -i eth0 -t 3 -T 1 -n -q -s /etc/flotilla/udhcpc.script -x hostname:"$name" \
  >/dev/null 2>&1 && [ -s /run/dhcp-address ]; then
  read -r addr </run/dhcp-address
  via=dhcp
elif is_ipv4 "$c_addr" && { [ -z "$c_dev" ] || [ "$c_dev" = eth0 ]; }; then
  len=$(mask_len "${c_mask:-24}")
  ip addr add "$c_addr/${len:-24}" dev eth0
  is_ipv4 "$c_gw" && ip route add default via "$c_gw" dev eth0
  : >/etc/resolv.conf
  for d in "$c_dns0" "$c_dns1"; do is_ipv4 "$d" && echo "nameserver $d" >>/etc/resolv.conf; done
  addr=$c_addr/${len:-24}
  via=cmdline
fi

echo "flotilla-test hostname=$name instance=${seed_iid:-unknown} ip=${addr%/*}" >/www/index.html
gc_send "BOOT http"
httpd -p 80 -h /www
# READY (after this script) means the page answers.
i=0
until wget -q -O /dev/null http://127.0.0.1/ 2>/dev/null || [ $i -ge 50 ]; do
  i=$((i + 1))
  sleep 0.1
done
echo "FLOTILLA-GUEST-NET ip=$addr via=$via hostname=$name"
NET

cat >"$ROOT/etc/flotilla/udhcpc.script" <<'DHCP'
#!/bin/sh
# udhcpc hook: $1 is the event; the lease is in ip, mask (prefix length), router, dns, domain.
case $1 in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound | renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface" && break; done
    {
      [ -n "$domain" ] && echo "search $domain"
      for d in $dns; do echo "nameserver $d"; done
    } >/etc/resolv.conf
    echo "$ip/${mask:-24}" >/run/dhcp-address
    ;;
esac
exit 0
DHCP

cat >"$ROOT/www/cgi-bin/get" <<'CGI'
#!/bin/sh
# GET /cgi-bin/get?<a.b.c.d>: the body of http://<a.b.c.d>/ as fetched from this guest.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/flotilla/lib.sh
target=$QUERY_STRING
if ! is_ipv4 "$target"; then
  printf 'Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nERROR query must be a dotted IPv4 address\n'
  exit 0
fi
# Debian's static busybox wget has no -T (it crashes on it), hence timeout(1).
err=/tmp/get.$$.err
if body=$(timeout 5 wget -q -O - "http://$target/" 2>"$err"); then
  printf 'Content-Type: text/plain\r\n\r\n%s\n' "$body"
else
  rc=$?
  why=$(tail -n1 "$err" | tr -d '\r')
  printf 'Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\nERROR fetching http://%s/: %s\n' \
    "$target" "${why:-no answer within 5 s (exit $rc)}"
fi
rm -f "$err"
CGI
chmod 755 "$ROOT/etc/flotilla/net.sh" "$ROOT/etc/flotilla/udhcpc.script" "$ROOT/www/cgi-bin/get"

(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
  gzip -9n >"$STAGE/initrd.img"

# ---------------------------------------------------------------- disk, cmdline, marker
qemu-img create -q -f qcow2 "$STAGE/disk.qcow2" 64M
echo "$CMDLINE" >"$STAGE/cmdline"
chmod 644 "$STAGE"/*
sync -f "$STAGE/disk.qcow2" 2>/dev/null || sync
{
  echo "recipe=$RECIPE"
  echo "kernel_package=$KPKG"
  echo "kernel_version=$KPKG_VERSION"
  echo "modules_builtin=${BUILTIN_FOUND[*]:-}"
  echo "modules_loaded=${load_order[*]}"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$STAGE/.complete"
chmod 755 "$STAGE"

# Swap the finished directory in with renames; a stale/half-built one is removed.
if [[ -e $DEST ]]; then
  OLD=$IMAGE_DIR/.$NAME.old.$$
  mv -T "$DEST" "$OLD"
  mv -T "$STAGE" "$DEST"
  rm -rf "$OLD"
else
  mv -T "$STAGE" "$DEST"
fi
log "built $DEST ($(du -sh "$DEST" | cut -f1))"
