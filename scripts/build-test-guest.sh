#!/usr/bin/env bash
# Builds the tiny "flotilla-test" guest image, once:
#
#   $IMAGE_DIR/flotilla-test/
#     vmlinuz      Debian's linux-image-6.1.*-cloud-amd64 kernel (newest apt knows; the
#                  package is downloaded and unpacked, never installed)
#     initrd.img   gzip'd cpio (newc): busybox-static + the kernel's virtio/button/evdev
#                  modules + an /init that prints FLOTILLA-GUEST-READY on ttyS0, writes
#                  "READY\n" to the virtio-serial port org.flotilla.guest.0 if there is one,
#                  and powers off (FLOTILLA-GUEST-POWEROFF) when the ACPI power button is
#                  pressed (virsh shutdown). /init stays PID 1 forever.
#     disk.qcow2   64 MiB empty qcow2 base disk (boot needs none; the control plane puts a
#                  copy-on-write overlay on it)
#     cmdline      kernel command line, one line
#     .complete    written last; an image dir without it is never used
#
# IMAGE_DIR is ${FLOTILLA_IMAGE_DIR:-/var/lib/flotilla/images}. Idempotent: exits at once when
# the image is complete and was built by this recipe version; FLOTILLA_REBUILD=1 forces a
# rebuild. The guest boots under plain TCG (domain type='qemu', machine 'pc', <acpi/>).
set -euo pipefail

log() { echo "build-test-guest: $*" >&2; }
die() { echo "build-test-guest: ERROR: $*" >&2; exit 1; }

# Bump when the image contents change, so existing images get rebuilt.
RECIPE=3 # bump when the image's contents change: built images are replaced
NAME=flotilla-test
IMAGE_DIR=${FLOTILLA_IMAGE_DIR:-/var/lib/flotilla/images}
DEST=$IMAGE_DIR/$NAME
FILES=(vmlinuz initrd.img disk.qcow2 cmdline)
CMDLINE="console=ttyS0 panic=-1 quiet"
# Modules the guest needs, in load order; dependencies are added from modules.dep and
# any that are built into the kernel are skipped.
WANT_MODULES=(virtio virtio_ring virtio_pci virtio_blk virtio_console button evdev)

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
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules}
cp /bin/busybox "$ROOT/bin/busybox"
while read -r applet; do
  [[ $applet == bin/busybox ]] && continue
  [[ -e $ROOT/$applet ]] || ln -s /bin/busybox "$ROOT/$applet"
done < <(/bin/busybox --list-full)
[[ -e $ROOT/bin/sh ]] || ln -s /bin/busybox "$ROOT/bin/sh"
mknod -m 600 "$ROOT/dev/console" c 5 1
mknod -m 666 "$ROOT/dev/null" c 1 3
mknod -m 600 "$ROOT/dev/ttyS0" c 4 64

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

# Make sure a char device node exists for /sys/class/<class>/<name>; print its path.
devnode() { # $1 = sysfs class dir entry, $2 = /dev path
  if [ ! -c "$2" ] && [ -r "$1/dev" ]; then
    IFS=: read -r maj min <"$1/dev"
    mknod -m 600 "$2" c "$maj" "$min"
  fi
  echo "$2"
}

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

echo "FLOTILLA-GUEST-READY"

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

# Tell the host agent channel, if any. The name arrives from the host asynchronously, so
# look for a few seconds. The write blocks until the host end is connected, hence '&'.
i=0
while [ $i -lt 50 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    if [ "$(cat "$p/name")" = "org.flotilla.guest.0" ]; then
      port=$(devnode "$p" "/dev/${p##*/}")
      ( echo READY >"$port" ) &
      i=1000
      break
    fi
  done
  [ $i -ge 1000 ] && break
  i=$((i + 1))
  sleep 0.1
done
while :; do sleep 3600; done
INIT
chmod 755 "$ROOT/init"

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
