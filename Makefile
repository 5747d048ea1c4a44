# Flotilla. `make demo` and `make test` set up everything they need (as root
# on Debian): libvirt + QEMU, the test guest image, and the pinned tools.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.bin
export PATH := $(TOOLS):$(PATH)
TEST_TIMEOUT ?= 30m

.PHONY: install all build tools host guest etcd setup proto proto-check docs conformance lint vet test test-unit fuzz fuzz-short demo bench bench-resize bench-xfer chaos clean

all: build

# -buildvcs=auto: --version shows the commit even where GOFLAGS turns
# stamping off (it is skipped quietly where there is no git checkout).
build:
	$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/...

# install: the binaries into $(DESTDIR)$(PREFIX)/bin, the systemd units
# into $(DESTDIR)/etc/systemd/system (then: systemctl daemon-reload; put
# flags in /etc/flotilla/{coordinator,agent}.env; systemctl enable --now
# flotilla-coordinator or flotilla-agent). A coordinator runs as the user
# flotilla, made here if missing (not under DESTDIR).
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/flotilla
	install -m 0755 $(BIN)/flotilla-coordinator $(BIN)/flotilla-agent $(BIN)/flotctl $(DESTDIR)$(PREFIX)/bin/
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|' packaging/systemd/flotilla-coordinator.service >$(DESTDIR)/etc/systemd/system/flotilla-coordinator.service
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|' packaging/systemd/flotilla-agent.service >$(DESTDIR)/etc/systemd/system/flotilla-agent.service
	if [ -z "$(DESTDIR)" ] && ! id flotilla >/dev/null 2>&1; then useradd --system --home /var/lib/flotilla --shell /usr/sbin/nologin flotilla; fi

tools:
	scripts/install-tools.sh

host:
	scripts/setup-host.sh

guest: host
	scripts/build-test-guest.sh

etcd:
	bench/writes/install-etcd.sh

setup: tools host guest etcd

proto: tools
	buf generate

# Regenerating must change nothing, and the protos must pass buf lint.
proto-check: tools
	buf lint
	scripts/proto-check.sh

# Documents generated from the code (a test fails when they are stale).
docs:
	$(GO) test ./coordinator/vocabulary -run TestVocabulariesDoc -update-doc
	$(GO) test ./internal/apidoc -run TestAPIReference -update-doc

vet:
	$(GO) vet ./...

lint: tools vet
	buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The whole suite, real libvirtd included. With CI=true a missing dependency fails.
# (go test runs every fuzz target's seed corpus; fuzz-short fuzzes each a little.)
test: setup proto-check lint
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz-short

# Every fuzz target for 5 s (about 40 s in all); `make fuzz` for longer,
# FUZZTIME=10m for longer still. A crash leaves its input in the package's
# testdata/fuzz: commit it as a regression test (scripts/fuzz.sh).
FUZZTIME ?= 2m
fuzz-short:
	GO=$(GO) FUZZTIME=5s scripts/fuzz.sh

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# The seed conformance suite alone, with its table of the 63 seed states
# (part of make test too).
conformance: setup
	$(GO) test -count=1 -v -run 'TestSeedConformance|TestResizeAcrossHostsOnRealLibvirt|TestResizeRollsBackWhenTheTargetDiesOnRealLibvirt' ./internal/e2e

# The resize downtime benchmark on the test bed (bench/README.md);
# FLOTILLA_BENCH_RATE=125000000 models a 1 Gbit/s link.
bench-resize: setup
	FLOTILLA_BENCH=resize CI=true $(GO) test -count=1 -v -timeout 30m -run TestBenchResizeDowntime ./internal/e2e

# Unit tests only: no libvirtd, no root.
test-unit:
	$(GO) test -race -count=1 -short ./...

# `make demo` boots a real guest; `make demo HYPERVISOR=fake` needs no libvirt.
HYPERVISOR ?= libvirt
demo:
	scripts/demo.sh --hypervisor=$(HYPERVISOR)

# Each bench prints a table; see bench/README.md. Run on a quiet machine.
# chaos: issue 19's soak, CHAOS_ROUNDS (>= 100) random fault rounds with a
# printed seed (CHAOS_SEED replays one) on the in-process cluster and on
# three coordinator processes (fake hypervisors), then CHAOS_LIBVIRTD_ROUNDS
# restarts of a test bed host's own libvirtd under a real guest (never the
# machine's libvirtd); each prints its table per fault kind: rounds,
# invariant violations (must be 0), recovery p50/p99.
CHAOS_ROUNDS ?= 100
CHAOS_LIBVIRTD_ROUNDS ?= 10
CHAOS_SEED ?= $(shell date +%s)
chaos:
	FLOTILLA_CHAOS_ROUNDS=$(CHAOS_ROUNDS) FLOTILLA_CHAOS_CLUSTER_ROUNDS=$(CHAOS_ROUNDS) FLOTILLA_CHAOS_LIBVIRTD_ROUNDS=$(CHAOS_LIBVIRTD_ROUNDS) FLOTILLA_CHAOS_SEED=$(CHAOS_SEED) \
		$(GO) test -count=1 -v -run 'TestChaosRounds|TestChaosLibvirtdRestart' -timeout $(TEST_TIMEOUT) ./internal/e2echaos

bench: build setup
	$(GO) run ./bench/cmd/flotilla-bench
	$(GO) run ./bench/cmd/flotilla-failover
	$(GO) run ./bench/cmd/flotilla-writes
	$(GO) run ./bench/cmd/flotilla-sim

# The disk copy between two test bed hosts (root; see bench/README.md).
bench-xfer: setup guest
	$(GO) run ./bench/cmd/flotilla-xfer-bench

clean:
	rm -rf $(BIN)
