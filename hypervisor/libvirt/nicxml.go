package libvirt

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// A domain's NICs in its XML: one <interface> each, and the NICs
// themselves, with their networks' prefixes and gateways, under
// <metadata> in Flotilla's namespace. The metadata is what lets Resync
// rebuild a host's networks from libvirt alone.

type interfaceXML struct {
	Type   string             `xml:"type,attr"` // network or bridge
	MAC    macXML             `xml:"mac"`
	Source interfaceSourceXML `xml:"source"`
	Model  *modelXML          `xml:"model"`
}

type macXML struct {
	Address string `xml:"address,attr"`
}

type interfaceSourceXML struct {
	Network string `xml:"network,attr,omitempty"`
	Bridge  string `xml:"bridge,attr,omitempty"`
}

type modelXML struct {
	Type string `xml:"type,attr"`
}

// metadataNS is the namespace of Flotilla's domain metadata. libvirt keeps
// one element per namespace.
const metadataNS = "https://flotilla-vm.org/xmlns/libvirt/nics/1"

type metadataXML struct {
	NICs *nicsMetaXML `xml:"https://flotilla-vm.org/xmlns/libvirt/nics/1 nics"`
}

type nicsMetaXML struct {
	NICs []nicMetaXML `xml:"nic"` // in the parent's namespace
}

type nicMetaXML struct {
	Network  string `xml:"network,attr"`
	Mode     string `xml:"mode,attr"`
	Bridge   string `xml:"bridge,attr,omitempty"`
	CIDR     string `xml:"cidr,attr"`
	Gateway  string `xml:"gateway,attr"`
	IP       string `xml:"ip,attr"`
	MAC      string `xml:"mac,attr"`
	Hostname string `xml:"hostname,attr,omitempty"`
}

// libvirtNetworkName is the libvirt network of a managed Flotilla network.
func libvirtNetworkName(network string) string { return domainPrefix + network }

func buildInterface(n hypervisor.NIC, lay guestLayout) interfaceXML {
	x := interfaceXML{MAC: macXML{Address: n.MAC}}
	if n.Mode == hypervisor.ModeBridge {
		x.Type, x.Source.Bridge = "bridge", n.Bridge
	} else {
		x.Type, x.Source.Network = "network", libvirtNetworkName(n.Network)
	}
	if lay.NICModel != "" {
		x.Model = &modelXML{Type: lay.NICModel}
	}
	return x
}

func nicsMetadata(nics []hypervisor.NIC) *nicsMetaXML {
	m := &nicsMetaXML{}
	for _, n := range nics {
		m.NICs = append(m.NICs, nicMetaXML{
			Network: n.Network, Mode: string(n.Mode), Bridge: n.Bridge,
			CIDR: n.Prefix.String(), Gateway: n.Gateway.String(), IP: n.IP.String(),
			MAC: n.MAC, Hostname: n.Hostname,
		})
	}
	return m
}

// nicsFromMetadata reads the NICs back from a domain's metadata and checks
// them as a spec's are: the XML came from libvirt, where anyone with
// access to it could have edited it.
func nicsFromMetadata(m *metadataXML) ([]hypervisor.NIC, error) {
	if m == nil || m.NICs == nil {
		return nil, nil
	}
	var out []hypervisor.NIC
	for _, x := range m.NICs.NICs {
		prefix, err1 := netip.ParsePrefix(x.CIDR)
		gw, err2 := netip.ParseAddr(x.Gateway)
		ip, err3 := netip.ParseAddr(x.IP)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("NIC metadata %+v unreadable: %w", x, hypervisor.ErrInvalidState)
		}
		n := hypervisor.NIC{
			Network: x.Network, Mode: hypervisor.NetworkMode(x.Mode), Bridge: x.Bridge,
			Prefix: prefix, Gateway: gw, IP: ip, MAC: x.MAC, Hostname: x.Hostname,
		}
		if err := hypervisor.ValidateNIC(n); err != nil {
			return nil, fmt.Errorf("NIC metadata: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}

// ipArg is the kernel's ip= argument for a direct-kernel-boot guest's first
// NIC: static address, gateway, netmask, host name, device, no autoconf.
func ipArg(nics []hypervisor.NIC, id string) string {
	if len(nics) == 0 {
		return ""
	}
	n := nics[0]
	host := n.Hostname
	if host == "" {
		host = id
	}
	return fmt.Sprintf("ip=%s::%s:%s:%s:eth0:off", n.IP, n.Gateway, hypervisor.Netmask(n.Prefix), host)
}

// withIPArg appends ipArg to the image's command line.
func withIPArg(cmdline string, nics []hypervisor.NIC, id string) string {
	arg := ipArg(nics, id)
	if arg == "" {
		return cmdline
	}
	return strings.TrimSpace(cmdline + " " + arg)
}

// withoutIPArg is the image's command line again: withIPArg undone.
func withoutIPArg(cmdline string, nics []hypervisor.NIC, id string) string {
	arg := ipArg(nics, id)
	if arg == "" {
		return cmdline
	}
	if cmdline == arg {
		return ""
	}
	return strings.TrimSuffix(cmdline, " "+arg)
}
