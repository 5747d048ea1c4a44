#!/usr/bin/env bash
# Runs every Go fuzz target for a bounded time each (go test -fuzz takes
# one target at a time). FUZZTIME=5s (make test) or longer (make fuzz).
# A crash fails the run and leaves its input in the package's
# testdata/fuzz/<Target>/: commit it there as a regression test (plain
# `go test` then runs it with the seed corpus), and fix the code.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
targets=(
	"./coordinator/fsm FuzzLogEntry"
	"./coordinator/fsm FuzzSnapshot"
	"./coordinator/agentlink FuzzConnectRequest"
	"./agent/guestchan FuzzParse"
	"./agent/guestchan FuzzLineReader"
	"./hypervisor/libvirt FuzzDomainXML"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz: $name ($pkg) for $FUZZTIME"
	"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"
done
