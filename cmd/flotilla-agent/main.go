// Command flotilla-agent runs on each hypervisor host: it drives the local
// hypervisor for the coordinator and streams power-state changes back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/agent/metrics"
	"github.com/flotilla-vm/flotilla/agent/node"
	"github.com/flotilla-vm/flotilla/cmd/internal/daemon"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/libvirt"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/opshttp"
	"github.com/flotilla-vm/flotilla/internal/version"
)

// testHooks applies test-only switches; only test builds have any
// (testhooks.go).
var testHooks = func(*config) {}

// defaultDiskReserveGiB is the free disk a preflight keeps by default: room
// for guests' thin disks to grow into (and for logs), so that a nearly full
// host refuses new work rather than pausing running guests on ENOSPC.
const defaultDiskReserveGiB = 1

// errReported is a command-line error already printed.
var errReported = errors.New("bad command line")

var hostIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// config is the parsed command line.
type config struct {
	coordinator   string
	hostID        string
	hypervisor    string
	libvirtSocket string
	imageDir      string
	diskDir       string
	runDir        string
	domainType    string
	stateDir      string
	capacity      hypervisor.Capacity
	diskReserve   uint64       // bytes a preflight keeps free in the disk dir
	ignoreEvents  bool         // test builds only (testhooks.go)
	daemon        daemon.Flags // logging, the HTTP endpoint, --version
	labels        map[string]string
	bridges       []string // host bridges bridge NICs may attach to
	guestPing     time.Duration
	// printConfig, when --print-config asks, prints the effective settings.
	printConfig func(io.Writer)
	tls           mtls.Files
	peerListen    string // where to serve AgentPeerService; empty: not at all
	peerInsecure  bool   // serve it without TLS on an address other hosts reach
	peerAdvertise string // what other agents dial; empty: the listener's address
	copy          copyFlags
}

// keyValues is a repeatable key=value flag.
type keyValues map[string]string

func (kv keyValues) String() string { return fmt.Sprint(map[string]string(kv)) }

// Settings is each key=value, for --print-config.
func (kv keyValues) Settings() []string { return daemon.SortedSettings(kv) }

func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	kv[k] = v
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errVersion: --version was asked for.
var errVersion = errors.New("version asked for")

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errVersion):
		daemon.PrintVersion(stdout, "flotilla-agent")
		return 0
	case errors.Is(err, errReported):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "flotilla-agent: %v\n", err)
		return 2
	}
	if cfg.printConfig != nil {
		cfg.printConfig(stdout)
		return 0
	}
	if err := daemon.CheckWritableDir("state-dir", cfg.stateDir); err != nil {
		fmt.Fprintf(stderr, "flotilla-agent: %v\n", err)
		return 2
	}
	base := cfg.daemon.Logger(stderr)
	log := base.With("host", cfg.hostID) // the packages add "host" themselves

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, base); err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	log.Info("agent stopped")
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var (
		cfg                config
		vcpus              uint
		memoryMiB, diskGiB uint64
		diskReserveGiB     uint64
	)
	fs := flag.NewFlagSet("flotilla-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.coordinator, "coordinator", "127.0.0.1:7443", "coordinator API address, host:port; a comma-separated list of cluster members is tried in turn")
	fs.StringVar(&cfg.hostID, "host-id", defaultHostID(), "this host's id (lowercase letters, digits, '.', '-'; 1..63)")
	fs.StringVar(&cfg.hypervisor, "hypervisor", "libvirt", "hypervisor driver: libvirt or fake")
	fs.StringVar(&cfg.libvirtSocket, "libvirt-socket", libvirt.DefaultSocket, "libvirtd's unix socket")
	fs.StringVar(&cfg.imageDir, "image-dir", libvirt.DefaultImageDir, "directory of base images")
	fs.StringVar(&cfg.diskDir, "disk-dir", libvirt.DefaultDiskDir, "directory of instance disks")
	fs.StringVar(&cfg.runDir, "run-dir", libvirt.DefaultRunDir, "directory of console logs and sockets")
	fs.StringVar(&cfg.domainType, "domain-type", "", "libvirt domain type: kvm, qemu (software emulation) or xen (libxl, connects to xen:///system); empty: kvm where the CPU has VT-x/AMD-V and /dev/kvm exists, else qemu")
	fs.StringVar(&cfg.stateDir, "state-dir", "/var/lib/flotilla/agent", "directory of the agent's step journal")
	fs.UintVar(&vcpus, "vcpus", 0, "vCPUs offered to guests (0: ask the hypervisor)")
	fs.Uint64Var(&memoryMiB, "memory-mib", 0, "memory in MiB offered to guests (0: ask the hypervisor)")
	fs.Uint64Var(&diskGiB, "disk-gib", 0, "disk in GiB offered to guests (0: ask the hypervisor)")
	fs.Uint64Var(&diskReserveGiB, "disk-reserve-gib", defaultDiskReserveGiB, "free disk in GiB kept in --disk-dir: a create or start fails INSUFFICIENT_DISK, before anything is made, when less than this (plus what a new disk takes at once) is free")
	cfg.daemon.Register(fs)
	fs.StringVar(&cfg.tls.Cert, "tls-cert", "", "this host's certificate for mutual TLS (Common Name = host id, OU = agent)")
	fs.StringVar(&cfg.tls.Key, "tls-key", "", "private key of --tls-cert")
	fs.StringVar(&cfg.tls.CA, "tls-ca", "", "CA bundle that signs the coordinators (and the other agents)")
	fs.StringVar(&cfg.peerListen, "peer-listen", "127.0.0.1:0", "where other agents pull disks from this one, host:port (empty: this agent does not move disks)")
	fs.BoolVar(&cfg.peerInsecure, "peer-insecure", false, "serve --peer-listen without TLS on an address other hosts can reach (disk tokens then travel in clear and pullers are not identified)")
	cfg.copy.register(fs)
	fs.StringVar(&cfg.peerAdvertise, "peer-advertise", "", "the address other agents dial for --peer-listen, host:port (default: the address listened on)")
	var bridges string
	fs.StringVar(&bridges, "bridges", "", "comma-separated host bridges that instances on bridge networks may attach to, e.g. br0,br1 (the operator makes them; the agent reports those that exist)")
	fs.DurationVar(&cfg.guestPing, "guest-ping-interval", guestchan.DefaultPingInterval,
		"how often the agent PINGs each guest side on its guest channel; a guest that leaves 3 in a row unanswered is reported unresponsive")
	labels := keyValues{}
	fs.Var(labels, "label", "a placement label of this host, key=value (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: flotilla-agent [flags]\n\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	if err := daemon.Configure(fs, "FLOTILLA_AGENT_", args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		if !fs.Parsed() {
			return config{}, err // the config file's or the environment's
		}
		// The flag package has printed the error and the usage.
		return config{}, errReported
	}
	if cfg.daemon.Version {
		return config{}, errVersion
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg.labels = labels
	testHooks(&cfg)
	var err error
	if cfg.guestPing < 100*time.Millisecond || cfg.guestPing > time.Hour {
		return config{}, fmt.Errorf("--guest-ping-interval %s: must be 100ms..1h", cfg.guestPing)
	}
	if cfg.bridges, err = parseBridges(bridges); err != nil {
		return config{}, err
	}

	for _, addr := range strings.Split(cfg.coordinator, ",") {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(addr)); err != nil {
			return config{}, fmt.Errorf("--coordinator %q: want host:port[,host:port...]: %w", cfg.coordinator, err)
		}
	}
	if !hostIDPattern.MatchString(cfg.hostID) {
		return config{}, fmt.Errorf("--host-id %q: want 1..63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit", cfg.hostID)
	}
	if cfg.hypervisor != "libvirt" && cfg.hypervisor != "fake" {
		return config{}, fmt.Errorf("--hypervisor %q: want libvirt or fake", cfg.hypervisor)
	}
	if vcpus > 1<<32-1 {
		return config{}, fmt.Errorf("--vcpus %d: too large", vcpus)
	}
	cfg.capacity = hypervisor.Capacity{VCPUs: uint32(vcpus), MemoryMiB: memoryMiB, DiskGiB: diskGiB}
	if diskReserveGiB > math.MaxUint64>>30 {
		return config{}, fmt.Errorf("--disk-reserve-gib %d: too large", diskReserveGiB)
	}
	cfg.diskReserve = diskReserveGiB << 30
	if err := cfg.daemon.Check(); err != nil {
		return config{}, err
	}
	if err := checkPeerFlags(cfg.peerListen, cfg.peerAdvertise); err != nil {
		return config{}, err
	}
	if host, _, _ := net.SplitHostPort(cfg.peerListen); cfg.peerListen != "" && !cfg.tls.Enabled() && !cfg.peerInsecure && !loopback(host) {
		return config{}, fmt.Errorf("--peer-listen %q is reachable from other hosts but --tls-* is not set: disk tokens would travel in clear and pullers could not be identified (set --tls-cert/--tls-key/--tls-ca, or --peer-insecure)", cfg.peerListen)
	}
	for name, dir := range map[string]string{"state-dir": cfg.stateDir, "image-dir": cfg.imageDir, "disk-dir": cfg.diskDir, "run-dir": cfg.runDir} {
		if dir == "" {
			return config{}, fmt.Errorf("--%s must not be empty", name)
		}
	}
	if cfg.daemon.PrintConfig {
		cfg.printConfig = func(w io.Writer) { daemon.PrintConfig(w, fs) }
	}
	return cfg, nil
}

// parseBridges reads --bridges: names of host interfaces, no repeats.
func parseBridges(s string) ([]string, error) {
	var out []string
	for _, b := range strings.Split(s, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if err := hypervisor.ValidateBridge(b); err != nil {
			return nil, fmt.Errorf("--bridges: %w", err)
		}
		if slices.Contains(out, b) {
			return nil, fmt.Errorf("--bridges: %s named twice", b)
		}
		out = append(out, b)
	}
	return out, nil
}

// checkPeerFlags validates --peer-listen and --peer-advertise. A listener on
// every address needs an advertised one: "0.0.0.0:7450" is no address
// another host can dial.
func checkPeerFlags(listen, advertise string) error {
	if listen == "" {
		if advertise != "" {
			return fmt.Errorf("--peer-advertise %q without --peer-listen", advertise)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--peer-listen %q: want host:port: %w", listen, err)
	}
	if advertise != "" {
		ah, ap, err := net.SplitHostPort(advertise)
		if err != nil || ah == "" || ap == "" || ap == "0" {
			return fmt.Errorf("--peer-advertise %q: want host:port with a host and a port", advertise)
		}
		return nil
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("--peer-listen %q listens on every address: say with --peer-advertise which one other agents dial", listen)
	}
	return nil
}

// loopback reports whether a listen host is reachable from this host only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// defaultHostID is the hostname, lowercased, with characters a host id
// cannot hold replaced by '-'. It may still be invalid (e.g. too long); the
// validation says so and the operator passes --host-id.
func defaultHostID() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(h))
}

// serve runs the agent until ctx ends. log carries no "host": the agent's
// packages add it.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	m := metrics.New()
	nc := nodeConfig(cfg, log)
	nc.Metrics = m
	n, err := node.New(nc)
	if err != nil {
		return err
	}
	if cfg.daemon.HTTPListen != "" {
		ops, err := opshttp.Start(cfg.daemon.HTTPListen, opshttp.Config{Gatherer: m.Registry, Ready: n.Ready, Pprof: cfg.daemon.Pprof}, log.With("host", cfg.hostID))
		if err != nil {
			n.Close()
			return err
		}
		defer ops.Close()
	}
	return n.Run(ctx)
}

// nodeConfig is what the command line asks of the agent.
func nodeConfig(cfg config, log *slog.Logger) node.Config {
	return node.Config{
		Coordinator: cfg.coordinator,
		HostID:      cfg.hostID,
		Hypervisor:  cfg.hypervisor,
		Libvirt: libvirt.Config{
			Socket: cfg.libvirtSocket, ImageDir: cfg.imageDir, DiskDir: cfg.diskDir, RunDir: cfg.runDir, DomainType: cfg.domainType,
			Bridges: cfg.bridges,
		},
		StateDir:        cfg.stateDir,
		Capacity:        cfg.capacity,
		DiskReserve:     cfg.diskReserve,
		GuestPing:       cfg.guestPing,
		Labels:          cfg.labels,
		IgnoreEvents:    cfg.ignoreEvents,
		TLS:             cfg.tls,
		PeerListen:      cfg.peerListen,
		PeerAdvertise:   cfg.peerAdvertise,
		CopyRateLimit:   cfg.copy.rateLimit,
		CopyCompression: cfg.copy.compression,
		AgentVersion:    version.Get().Short(),
		Logger:          log,
	}
}
