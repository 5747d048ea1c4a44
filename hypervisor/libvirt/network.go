package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Managed (nat and isolated) networks are libvirt networks named
// flotilla-<name>, one per host, each with the DHCP and DNS reservations of
// the NICs on it. Nothing but the domains' own definitions says which
// reservations a network should have: every NIC is in its domain's
// <metadata>, so the networks can be rebuilt from libvirt alone (Resync),
// and a network whose last domain went is removed (gcNetworks).

// netState serialises changes to managed networks: an ensure and a clean-up
// must not interleave, or the clean-up could remove a network a create has
// just ensured and not yet defined its domain on.
type netState struct {
	mu sync.Mutex
	// pending are the NICs whose networks are being ensured, by instance
	// id: users this driver's clean-ups must not miss while a definition
	// is being written. (Domains are defined before their networks are
	// ensured, so another driver's clean-up sees them: ensureDefinedNetworks.)
	pending map[string][]hypervisor.NIC
}

// Networks: this host defines nat and isolated networks itself; its
// bridges are those of Config.Bridges that exist now.
func (d *Driver) Networks(ctx context.Context) (hypervisor.NetworkSupport, error) {
	if err := ctx.Err(); err != nil {
		return hypervisor.NetworkSupport{}, err
	}
	out := hypervisor.NetworkSupport{ManagedNetworks: true}
	for _, b := range d.cfg.Bridges {
		if bridgeExists(b) {
			out.Bridges = append(out.Bridges, b)
		} else {
			d.log.Warn("configured bridge does not exist; not offered", "bridge", b)
		}
	}
	return out, nil
}

func bridgeExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// checkServed is Preflight's network check.
func checkServed(nics []hypervisor.NIC) error {
	return hypervisor.CheckNICsServed(nics, true, bridgeExists)
}

// ensureNetworks makes the managed networks of nics exist, active, with
// id's reservations, before id's domain is defined over them. done ends the
// reservation's protection from gcNetworks: the caller calls it once the
// domain is defined (or has failed to be).
func (d *Driver) ensureNetworks(ctx context.Context, id string, nics []hypervisor.NIC) (done func(), err error) {
	managed := slices.DeleteFunc(slices.Clone(nics), func(n hypervisor.NIC) bool { return !n.Mode.Managed() })
	if len(managed) == 0 {
		return func() {}, nil
	}
	d.nets.mu.Lock()
	defer d.nets.mu.Unlock()
	d.nets.pending[id] = managed
	done = func() {
		d.nets.mu.Lock()
		defer d.nets.mu.Unlock()
		delete(d.nets.pending, id)
	}
	for _, n := range managed {
		if err := d.ensureNetwork(ctx, shapeOf(n), []reservation{reservationOf(n)}); err != nil {
			delete(d.nets.pending, id)
			return nil, err
		}
	}
	return done, nil
}

// ensureNetwork defines (or corrects) and starts one managed network and
// adds the reservations want to it. A network of the name defined
// otherwise (another CIDR, gateway or mode) is redefined if none of its
// reservations belongs to another NIC, else it is ErrNetworkUnavailable.
// The caller holds nets.mu.
func (d *Driver) ensureNetwork(ctx context.Context, s netShape, want []reservation) error {
	name := libvirtNetworkName(s.Name)
	log := d.log.With("network", name)
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		nw, err := l.NetworkLookupByName(name)
		if isCode(err, golibvirt.ErrNoNetwork) {
			return defineNetwork(l, s, want)
		}
		if err != nil {
			return err
		}
		def, err := readNetwork(l, nw, s.Name)
		if err != nil {
			return err
		}
		if def.shape != s {
			for _, h := range def.hosts {
				if !slices.ContainsFunc(want, func(r reservation) bool { return r.MAC == h.MAC }) {
					return fmt.Errorf("network %s is defined as %s %s gateway %s and in use (%s): %w",
						name, def.shape.Mode, def.shape.Prefix, def.shape.Gateway, h.MAC, hypervisor.ErrNetworkUnavailable)
				}
			}
			log.Warn("network defined otherwise and unused; redefining", "mode", def.shape.Mode, "cidr", def.shape.Prefix)
			if err := removeNetwork(l, nw); err != nil {
				return err
			}
			return defineNetwork(l, s, want)
		}
		active, err := l.NetworkIsActive(nw)
		if err != nil {
			return err
		}
		if active == 0 {
			log.Info("starting network")
			if err := l.NetworkCreate(nw); err != nil {
				return fmt.Errorf("start network %s: %w", name, err)
			}
		}
		for _, r := range want {
			if err := reserve(l, nw, def, r); err != nil {
				return fmt.Errorf("network %s: %w", name, err)
			}
		}
		return l.NetworkSetAutostart(nw, 1)
	})
	if err != nil {
		return wrapErr("ensure network", name, err)
	}
	return nil
}

// defineNetwork defines, starts and autostarts a managed network with rs.
func defineNetwork(l *golibvirt.Libvirt, s netShape, rs []reservation) error {
	x, err := marshalXML(buildNetwork(s, rs))
	if err != nil {
		return err
	}
	nw, err := l.NetworkDefineXML(x)
	if err != nil {
		return fmt.Errorf("define network %s: %w", libvirtNetworkName(s.Name), err)
	}
	if err := l.NetworkCreate(nw); err != nil {
		_ = l.NetworkUndefine(nw)
		return fmt.Errorf("start network %s: %w", nw.Name, err)
	}
	return l.NetworkSetAutostart(nw, 1)
}

// removeNetwork stops and undefines a network.
func removeNetwork(l *golibvirt.Libvirt, nw golibvirt.Network) error {
	if active, err := l.NetworkIsActive(nw); err != nil {
		return err
	} else if active != 0 {
		if err := l.NetworkDestroy(nw); err != nil && !isCode(err, golibvirt.ErrOperationInvalid) {
			return fmt.Errorf("stop network %s: %w", nw.Name, err)
		}
	}
	if err := l.NetworkUndefine(nw); err != nil && !isCode(err, golibvirt.ErrNoNetwork) {
		return fmt.Errorf("undefine network %s: %w", nw.Name, err)
	}
	return nil
}

// reserve makes r one of the network's reservations: entries that
// contradict it (its MAC, address or host name on another entry, which
// only a deleted instance can have left: the coordinator hands out each
// once) are removed first.
func reserve(l *golibvirt.Libvirt, nw golibvirt.Network, def definedNetwork, r reservation) error {
	have := false
	for _, h := range def.hosts {
		switch {
		case h == r:
			have = true
		case h.MAC == r.MAC || h.IP == r.IP || (r.Hostname != "" && h.Hostname == r.Hostname):
			if err := unreserve(l, nw, def, h); err != nil {
				return err
			}
		}
	}
	if !have {
		err := updateNetwork(l, nw, golibvirt.NetworkUpdateCommandAddLast, golibvirt.NetworkSectionIPDhcpHost, r.dhcpHost())
		if err != nil && isCode(err, golibvirt.ErrOperationInvalid) {
			// "An existing entry matches": success only if it is this one
			// (the running network had it, the persistent one not).
			if now, rerr := readNetwork(l, nw, def.shape.Name); rerr == nil && slices.Contains(now.hosts, r) {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("reserve %s for %s: %w", r.IP, r.MAC, err)
		}
	}
	if r.Hostname == "" {
		return nil
	}
	for _, h := range def.dns {
		if h.IP == r.IP.String() && slices.Equal(h.Hostnames, []string{r.Hostname}) {
			return nil
		}
	}
	for _, h := range def.dns {
		if h.IP == r.IP.String() || slices.Contains(h.Hostnames, r.Hostname) {
			if err := updateNetwork(l, nw, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionDNSHost, h); err != nil {
				return fmt.Errorf("remove stale DNS entry %s: %w", h.IP, err)
			}
		}
	}
	err := updateNetwork(l, nw, golibvirt.NetworkUpdateCommandAddLast, golibvirt.NetworkSectionDNSHost, r.dnsHost())
	if err != nil && isCode(err, golibvirt.ErrOperationInvalid) {
		if now, rerr := readNetwork(l, nw, def.shape.Name); rerr == nil && slices.ContainsFunc(now.dns, func(h dnsHostXML) bool {
			return h.IP == r.IP.String() && slices.Equal(h.Hostnames, []string{r.Hostname})
		}) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("add DNS entry %s for %s: %w", r.Hostname, r.IP, err)
	}
	return nil
}

// readNetwork reads a network's persistent definition.
func readNetwork(l *golibvirt.Libvirt, nw golibvirt.Network, name string) (definedNetwork, error) {
	raw, err := l.NetworkGetXMLDesc(nw, uint32(golibvirt.NetworkXMLInactive))
	if err != nil {
		return definedNetwork{}, err
	}
	return parseNetwork(name, raw)
}

// unreserve removes a reservation and the DNS entries of its address.
func unreserve(l *golibvirt.Libvirt, nw golibvirt.Network, def definedNetwork, h reservation) error {
	if err := updateNetwork(l, nw, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionIPDhcpHost, h.dhcpHost()); err != nil {
		return fmt.Errorf("remove reservation %s for %s: %w", h.IP, h.MAC, err)
	}
	for _, dns := range def.dns {
		if dns.IP == h.IP.String() {
			if err := updateNetwork(l, nw, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionDNSHost, dns); err != nil {
				return fmt.Errorf("remove DNS entry %s: %w", dns.IP, err)
			}
		}
	}
	return nil
}

// updateNetwork changes one entry of a network, running and persistent
// both. Deleting what is not there (libvirt refuses it as an invalid
// operation) is success.
func updateNetwork(l *golibvirt.Libvirt, nw golibvirt.Network, cmd golibvirt.NetworkUpdateCommand, section golibvirt.NetworkUpdateSection, entry any) error {
	x, err := marshalXML(entry)
	if err != nil {
		return err
	}
	flags := golibvirt.NetworkUpdateAffectConfig
	if active, err := l.NetworkIsActive(nw); err != nil {
		return err
	} else if active != 0 {
		flags |= golibvirt.NetworkUpdateAffectLive
	}
	err = l.NetworkUpdateCompat(nw, cmd, section, -1, x, flags)
	if cmd == golibvirt.NetworkUpdateCommandDelete && isCode(err, golibvirt.ErrOperationInvalid) {
		msg := err.Error()
		if strings.Contains(msg, "couldn't locate") || strings.Contains(msg, "not found") || strings.Contains(msg, "doesn't exist") {
			return nil
		}
	}
	return err
}

// users are the reservations the domains on this host (and the ones being
// defined) hold, by network name.
type users map[string][]hypervisor.NIC

// networkUsers reads every Flotilla domain's NICs from its persistent
// definition. The caller holds nets.mu.
func (d *Driver) networkUsers(l *golibvirt.Libvirt) (users, error) {
	doms, _, err := l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, err
	}
	u := users{}
	for _, dom := range doms {
		id, ok := idFromDomainName(dom.Name)
		if !ok {
			continue
		}
		raw, err := l.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
		if isNoDomain(err) {
			continue // undefined since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("definition of %s: %w", dom.Name, err)
		}
		def, err := parseDefinition(d.cfg, id, raw)
		if err != nil {
			d.log.Warn("network users: skipping a domain whose definition is not Flotilla's", "instance", id, "err", err)
			continue
		}
		for _, n := range def.params.NICs {
			if n.Mode.Managed() {
				u[n.Network] = append(u[n.Network], n)
			}
		}
	}
	for _, nics := range d.nets.pending {
		for _, n := range nics {
			u[n.Network] = append(u[n.Network], n)
		}
	}
	return u, nil
}

// Resync puts back every managed network and reservation the domains on
// this host need, and removes the reservations and networks none needs.
func (d *Driver) Resync(ctx context.Context) error {
	d.nets.mu.Lock()
	defer d.nets.mu.Unlock()
	var u users
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		u, err = d.networkUsers(l)
		return err
	})
	if err != nil {
		return wrapErr("resync networks", "", err)
	}
	var errs []error
	for _, name := range sortedKeys(u) {
		nics := u[name]
		s := shapeOf(nics[0])
		var rs []reservation
		for _, n := range nics {
			if shapeOf(n) != s {
				d.log.Warn("resync: NICs disagree about their network; keeping the first", "network", name, "cidr", n.Prefix, "want", s.Prefix)
				continue
			}
			rs = append(rs, reservationOf(n))
		}
		if err := d.ensureNetwork(ctx, s, rs); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.gcNetworksLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d.log.Debug("networks resynced", "networks", len(u))
	return nil
}

// gcNetworks removes the reservations no domain holds any more, and the
// managed networks no domain uses.
func (d *Driver) gcNetworks(ctx context.Context) error {
	d.nets.mu.Lock()
	defer d.nets.mu.Unlock()
	return d.gcNetworksLocked(ctx)
}

func (d *Driver) gcNetworksLocked(ctx context.Context) error {
	err := d.call(ctx, func(l *golibvirt.Libvirt) error {
		u, err := d.networkUsers(l)
		if err != nil {
			return err
		}
		nets, _, err := l.ConnectListAllNetworks(1, golibvirt.ConnectListNetworksActive|golibvirt.ConnectListNetworksInactive)
		if err != nil {
			return err
		}
		for _, nw := range nets {
			name, ok := strings.CutPrefix(nw.Name, domainPrefix)
			if !ok || !hypervisor.NetworkNamePattern.MatchString(name) {
				continue
			}
			if len(u[name]) == 0 {
				d.log.Info("removing network: no instance uses it", "network", nw.Name)
				if err := removeNetwork(l, nw); err != nil {
					return err
				}
				continue
			}
			raw, err := l.NetworkGetXMLDesc(nw, uint32(golibvirt.NetworkXMLInactive))
			if err != nil {
				return err
			}
			def, err := parseNetwork(name, raw)
			if err != nil {
				return err
			}
			for _, h := range def.hosts {
				if !slices.ContainsFunc(u[name], func(n hypervisor.NIC) bool { return reservationOf(n) == h }) {
					d.log.Info("removing reservation no instance holds", "network", nw.Name, "mac", h.MAC, "ip", h.IP)
					if err := unreserve(l, nw, def, h); err != nil {
						return fmt.Errorf("network %s: %w", nw.Name, err)
					}
				}
			}
		}
		return nil
	})
	return wrapErr("clean up networks", "", err)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
