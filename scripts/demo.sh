#!/usr/bin/env bash
# Flotilla demo: one coordinator (single-node Raft in a data dir) and one
# agent on this host boot a real guest and take it through its states,
# printing every status change as the coordinator reports it.
#   scripts/demo.sh [--hypervisor=libvirt|fake]
set -euo pipefail
cd "$(dirname "$0")/.."
hypervisor=libvirt
for arg in "$@"; do
  case "$arg" in
    --hypervisor=*) hypervisor="${arg#*=}" ;;
    *) echo "usage: $0 [--hypervisor=libvirt|fake]" >&2; exit 2 ;;
  esac
done
case "$hypervisor" in libvirt|fake) ;; *) echo "demo: unknown hypervisor $hypervisor" >&2; exit 2 ;; esac

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [[ $hypervisor == libvirt ]]; then
  say "setting up libvirtd + QEMU and the test guest (idempotent)"
  scripts/setup-host.sh
  scripts/build-test-guest.sh
fi
say "building binaries"
go build -o bin/ ./cmd/...

work=$(mktemp -d /tmp/flotilla-demo.XXXXXX)
api=127.0.0.1:${FLOTILLA_DEMO_PORT:-17443}
raft=127.0.0.1:$(( ${FLOTILLA_DEMO_PORT:-17443} + 1 ))
export FLOTILLA_ADDR=$api
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

say "starting coordinator (data dir $work/coordinator, API $api)"
bin/flotilla-coordinator --data-dir "$work/coordinator" --listen "$api" --raft-addr "$raft" >"$work/coordinator.log" 2>&1 &
pids+=($!)
say "starting agent (hypervisor: $hypervisor)"
bin/flotilla-agent --coordinator "$api" --host-id demo-host --hypervisor "$hypervisor" \
  --disk-dir "$work/disks" --run-dir "$work/run" --state-dir "$work/agent" >"$work/agent.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 150); do
  if bin/flotctl host get demo-host 2>/dev/null | grep READY >/dev/null; then break; fi
  sleep 0.2
done
bin/flotctl host list

# Every change the coordinator reports, as it happens.
bin/flotctl watch --vocabulary nova,azure,manage-instance >"$work/watch.log" 2>&1 &
pids+=($!)

say "a NAT network: the coordinator gives out its addresses, the host's libvirt serves them by DHCP and DNS"
bin/flotctl network create demo --cidr 198.19.77.0/24
op_json=$(bin/flotctl -o json create --name demo --image flotilla-test --vcpus 1 --memory-mib 192 --network demo)
id=$(sed -n 's/.*"instanceId":"\([^"]*\)".*/\1/p' <<<"$op_json")
op=$(sed -n 's/.*"id":"\(op-[^"]*\)".*/\1/p' <<<"$op_json")
say "create: instance $id, operation $op"
bin/flotctl op wait "$op" >/dev/null
bin/flotctl get "$id"
addr=$(bin/flotctl -o json get "$id" | sed -n 's/.*"ipv4Address":"\([^"]*\)".*/\1/p')
if [[ $hypervisor == libvirt && -n $addr ]]; then
  # The test guest serves a one-line page once it has its address (DHCP).
  page=""
  for _ in $(seq 1 150); do
    page=$(timeout 2 bash -c "exec 3<>/dev/tcp/$addr/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null | tail -n 1) || true
    [[ $page == flotilla-test* ]] && break
    sleep 0.2
  done
  say "the guest's own page at http://$addr/"
  echo "${page:-(no answer)}"
fi

step() {
  say "$*"
  bin/flotctl "$@" --wait >/dev/null
  bin/flotctl get "$id"
}
step pause "$id"
step unpause "$id"
step suspend "$id"
step resume "$id"
# The guest powers itself off on the ACPI button once its init is listening:
# wait for its n-th boot to get there.
ready() {
  [[ $hypervisor == libvirt ]] || return 0
  for _ in $(seq 1 150); do
    (($(grep -c FLOTILLA-GUEST-READY "$work/run/$id.console.log" 2>/dev/null || true) >= $1)) && break
    sleep 0.2
  done
}
ready 1
step update "$id" --name demo-renamed --label team=demo
# A resize on this one host (in place: stop, the disk kept as the original,
# boot at the new shape), confirmed; then the disk grows under the running guest.
step resize "$id" --memory-mib 256 --disk-gib 1 --graceful 60s
step confirm-resize "$id"
step extend "$id" --disk-gib 2
ready 2
step stop "$id" --graceful 60s
step delete "$id"
say "its address is free again; the network can go"
bin/flotctl network list
bin/flotctl network delete demo

say "every status change the coordinator reported, with Nova's, Azure's and seed 000's words (flotctl watch --vocabulary)"
sleep 0.5
cat "$work/watch.log"
say "operations"
bin/flotctl op list --instance "$id"
say "done; logs in $work"
