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
# Go's fuzz coordinator can end a clean run with "context deadline
# exceeded" as -fuzztime expires (go.dev/issue/75804, fixed in Go 1.27):
# such a run, which wrote no failing input, is run once more; a crash
# always leaves its input and fails at once.
fuzz() {
	"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$out"
	return "${PIPESTATUS[0]}"
}
# count is how many inputs a target's corpus dir holds (0 when it has none).
count() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	corpus="$pkg/testdata/fuzz/$name"
	before=$(count "$corpus")
	echo "fuzz: $name ($pkg) for $FUZZTIME"
	if fuzz; then
		continue
	fi
	if [ "$(count "$corpus")" = "$before" ] && grep -q '^    context deadline exceeded$' "$out"; then
		echo "fuzz: $name ended with Go's fuzztime race (go.dev/issue/75804) and no failing input; once more"
		fuzz
	else
		exit 1
	fi
done
