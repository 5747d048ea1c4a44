// Package libvirt implements hypervisor.Driver over libvirtd's RPC protocol
// (github.com/digitalocean/go-libvirt), for KVM or, without hardware KVM,
// plain QEMU emulation, or for Xen through libvirt's libxl driver.
package libvirt

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Defaults for the zero Config fields.
const (
	DefaultSocket   = "/var/run/libvirt/libvirt-sock"
	DefaultImageDir = "/var/lib/flotilla/images"
	DefaultDiskDir  = "/var/lib/flotilla/disks"
	DefaultRunDir   = "/run/flotilla"
)

// Config configures a Driver. Zero fields take the defaults above.
type Config struct {
	Socket     string // libvirtd's unix socket
	ImageDir   string // one directory per image: .complete, disk.qcow2, optional vmlinuz, initrd.img, cmdline
	DiskDir    string // instance disk overlays, <id>.qcow2
	RunDir     string // console logs and guest channel sockets
	DomainType string // "kvm", "qemu" (software emulation) or "xen" (libxl); default "kvm" where hardware KVM works (defaultDomainType)
	// Bridges are the host bridges the operator lets bridge NICs attach
	// to; Networks reports those that exist.
	Bridges []string
	Logger  *slog.Logger
}

// Driver is a hypervisor.Driver for one host's libvirtd.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	conn  *connector
	locks keyedLock
	nets  netState
	sums  sumCache // images' checksums

	// life ends when the driver closes; event subscriptions hang off it.
	life    context.Context
	endLife context.CancelFunc
}

var _ hypervisor.Driver = (*Driver)(nil)

// New connects to libvirtd. It fails, wrapping hypervisor.ErrUnavailable, when
// libvirtd does not answer; after that the driver reconnects on its own.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "hypervisor/libvirt")
	uri := connectURI(cfg.DomainType)
	d := &Driver{cfg: cfg, log: log, conn: newConnector(cfg.Socket, uri, log)}
	d.nets.pending = map[string][]hypervisor.NIC{}
	// libvirtd restarted (or the connection broke): networks it lost, or an
	// operator removed meanwhile, come back.
	d.conn.onReconnect = d.resyncInBackground
	d.life, d.endLife = context.WithCancel(context.Background())
	if err := d.conn.start(ctx); err != nil {
		d.endLife()
		return nil, err
	}
	log.Info("connected to libvirtd", "socket", cfg.Socket, "uri", uri, "domain_type", cfg.DomainType)
	d.removeStaleBundles()
	return d, nil
}

func (c Config) withDefaults() (Config, error) {
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if c.ImageDir == "" {
		c.ImageDir = DefaultImageDir
	}
	if c.DiskDir == "" {
		c.DiskDir = DefaultDiskDir
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.DomainType == "" {
		c.DomainType = defaultDomainType()
	}
	switch c.DomainType {
	case domainTypeKVM, domainTypeQEMU, domainTypeXen:
	default:
		return c, fmt.Errorf("libvirt: domain type %q: want kvm, qemu or xen", c.DomainType)
	}
	for _, b := range c.Bridges {
		if err := hypervisor.ValidateBridge(b); err != nil {
			return c, fmt.Errorf("libvirt: %w", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	// Paths end up in domain XML and qemu-img arguments, which libvirt and
	// QEMU resolve from their own working directories: make them absolute.
	for _, p := range []*string{&c.ImageDir, &c.DiskDir, &c.RunDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, fmt.Errorf("libvirt: %s: %w", *p, err)
		}
		*p = abs
	}
	// The guest channel is a unix socket in RunDir; sun_path holds 107 bytes.
	// Refuse a run dir too long for the longest instance id now, rather
	// than fail every create later.
	if longest := len(pathsFor(c.DiskDir, c.RunDir, strings.Repeat("x", 63)).GuestSock); longest > 107 {
		return c, fmt.Errorf("libvirt: run dir %q is too long for guest sockets (%d bytes, max 107)", c.RunDir, longest)
	}
	for _, dir := range []string{c.DiskDir, c.RunDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return c, fmt.Errorf("libvirt: %w", err)
		}
	}
	return c, nil
}

// Kind is the libvirt domain type in use: "kvm", "qemu" or "xen". The
// coordinator matches it against an instance's placement hypervisor_kind.
func (d *Driver) Kind() string { return d.cfg.DomainType }

// connectURI names the libvirt driver for a domain type: libvirtd serves
// several drivers on one socket, and the URI picks QEMU's or libxl's. Xen
// is never auto-detected: a Xen host says --domain-type xen.
func connectURI(domainType string) golibvirt.ConnectURI {
	if domainType == domainTypeXen {
		return golibvirt.XenSystem
	}
	return golibvirt.QEMUSystem
}

// Close stops reconnecting, ends event subscriptions and disconnects.
func (d *Driver) Close() error {
	d.endLife()
	return d.conn.close()
}

// Capacity reports the host's CPUs and memory (from libvirt) and the size of
// the file system holding instance disks.
func (d *Driver) Capacity(ctx context.Context) (hypervisor.Capacity, error) {
	var c hypervisor.Capacity
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		_, memKiB, cpus, _, _, _, _, _, err := l.NodeGetInfo()
		c.VCPUs = uint32(max(cpus, 0))
		c.MemoryMiB = memKiB / 1024
		return err
	})
	if err != nil {
		return hypervisor.Capacity{}, wrapErr("capacity", "", err)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(d.cfg.DiskDir, &fs); err != nil {
		return hypervisor.Capacity{}, fmt.Errorf("libvirt: capacity: statfs %s: %w", d.cfg.DiskDir, err)
	}
	c.DiskGiB = fs.Blocks * uint64(fs.Bsize) >> 30
	return c, nil
}

// call runs fn against the live connection. go-libvirt's calls take no
// context, so fn runs in its own goroutine and call returns when ctx ends; an
// abandoned fn finishes (or fails with the connection) on its own.
func (d *Driver) call(ctx context.Context, fn func(l *golibvirt.Libvirt) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := d.conn.get()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fn(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// domainState is one observation of a domain through libvirt.
type domainState struct {
	dom    golibvirt.Domain
	found  bool
	state  hypervisor.PowerState
	reason string
}

// observe looks a domain up and maps its state; a missing domain is
// found=false with PowerNoDomain, not an error.
func (d *Driver) observe(ctx context.Context, id string) (domainState, error) {
	var s domainState
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		dom, err := l.DomainLookupByName(domainName(id))
		if err != nil {
			return err
		}
		s, err = observeDomain(l, dom)
		return err
	})
	if isNoDomain(err) {
		return noDomainState(), nil
	}
	if err != nil {
		return domainState{}, wrapErr("get state of", id, err)
	}
	return s, nil
}

// noDomainState is the observation of a domain libvirt does not know.
func noDomainState() domainState {
	return domainState{state: hypervisor.PowerNoDomain, reason: "missing"}
}

// observeDomain reads the state of a known domain handle.
func observeDomain(l *golibvirt.Libvirt, dom golibvirt.Domain) (domainState, error) {
	st, reason, err := l.DomainGetState(dom, 0)
	if err != nil {
		return domainState{}, err
	}
	managedSave := false
	if golibvirt.DomainState(st) == golibvirt.DomainShutoff {
		has, err := l.DomainHasManagedSaveImage(dom, 0)
		if err != nil {
			return domainState{}, err
		}
		managedSave = has != 0
	}
	ps, word := powerState(st, reason, managedSave)
	return domainState{dom: dom, found: true, state: ps, reason: word}, nil
}

// errState builds the error for an operation the current state forbids.
func errState(op, id string, s domainState) error {
	if !s.found {
		return fmt.Errorf("libvirt: %s %s: %w", op, id, hypervisor.ErrNotFound)
	}
	return fmt.Errorf("libvirt: %s %s: domain is %s (%s): %w", op, id, s.state, s.reason, hypervisor.ErrInvalidState)
}

// isOff reports states in which no guest is running.
func isOff(s hypervisor.PowerState) bool {
	return s == hypervisor.PowerShutOff || s == hypervisor.PowerSavedToDisk || s == hypervisor.PowerNoDomain
}

// resyncInBackground runs Resync, bounded, logging a failure (the agent's
// next session resyncs again).
func (d *Driver) resyncInBackground() {
	go func() {
		ctx, cancel := context.WithTimeout(d.life, rollbackTimeout)
		defer cancel()
		if err := d.Resync(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("network resync after reconnecting failed", "err", err)
		}
	}()
}

func (d *Driver) instanceLog(id string) *slog.Logger { return d.log.With("instance", id) }

// GuestSocket is the unix socket QEMU (or libxl) listens on for the
// domain's guest channel.
func (d *Driver) GuestSocket(id string) string {
	if hypervisor.ValidateID(id) != nil {
		return "" // never a path built from anything but an instance id
	}
	return pathsFor(d.cfg.DiskDir, d.cfg.RunDir, id).GuestSock
}
