#!/usr/bin/env bash
# Installs Debian's etcd server (bookworm: 3.4.x) for the write benchmark.
# Idempotent: does nothing when an `etcd` binary is already on PATH.
set -euo pipefail

if command -v etcd >/dev/null 2>&1; then
	etcd --version | sed -n 1p # not head: under pipefail, etcd killed by SIGPIPE fails the script
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Don't let the package start its own system-wide etcd service: the benchmark
# runs private clusters on ephemeral ports. policy-rc.d is only put in place if
# none exists, and removed again afterwards.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	own_policy=1
fi
trap '[ "$own_policy" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends etcd-server; then
	$SUDO apt-get update
	$SUDO apt-get install -y --no-install-recommends etcd-server
fi

etcd --version | sed -n 1p # not head: under pipefail, etcd killed by SIGPIPE fails the script
