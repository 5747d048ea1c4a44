package libvirt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/netip"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The part of libvirt's network schema Flotilla writes for a nat or
// isolated network: a bridge of its own, the gateway address on it, and a
// dnsmasq that hands out only the static leases (a <dhcp> with hosts and
// no range) and answers DNS for NAME.NETWORK, locally only.

type networkXML struct {
	XMLName xml.Name           `xml:"network"`
	Name    string             `xml:"name"`
	Forward *networkForwardXML `xml:"forward"`
	Bridge  networkBridgeXML   `xml:"bridge"`
	Domain  *networkDomainXML  `xml:"domain"`
	DNS     networkDNSXML      `xml:"dns"`
	IPs     []networkIPXML     `xml:"ip"`
}

type networkForwardXML struct {
	Mode string `xml:"mode,attr"`
}

type networkBridgeXML struct {
	Name  string `xml:"name,attr"`
	STP   string `xml:"stp,attr,omitempty"`
	Delay string `xml:"delay,attr,omitempty"`
}

type networkDomainXML struct {
	Name      string `xml:"name,attr"`
	LocalOnly string `xml:"localOnly,attr,omitempty"`
}

type networkDNSXML struct {
	Hosts []dnsHostXML `xml:"host"`
}

type dnsHostXML struct {
	XMLName   xml.Name `xml:"host"`
	IP        string   `xml:"ip,attr"`
	Hostnames []string `xml:"hostname"`
}

type networkIPXML struct {
	Address string          `xml:"address,attr"`
	Netmask string          `xml:"netmask,attr,omitempty"`
	Prefix  string          `xml:"prefix,attr,omitempty"`
	Family  string          `xml:"family,attr,omitempty"`
	DHCP    *networkDHCPXML `xml:"dhcp"`
}

type networkDHCPXML struct {
	Hosts []dhcpHostXML `xml:"host"`
}

type dhcpHostXML struct {
	XMLName xml.Name `xml:"host"`
	MAC     string   `xml:"mac,attr"`
	IP      string   `xml:"ip,attr"`
	Name    string   `xml:"name,attr,omitempty"`
}

// bridgeDevice is the host bridge of a managed network: "flt" and 8 hex
// digits of the name's hash, inside IFNAMSIZ whatever the name's length.
func bridgeDevice(network string) string {
	h := sha256.Sum256([]byte(network))
	return "flt" + hex.EncodeToString(h[:4])
}

// netShape is what defines a managed network, besides its reservations.
type netShape struct {
	Name    string // Flotilla's name
	Mode    hypervisor.NetworkMode
	Prefix  netip.Prefix
	Gateway netip.Addr
}

func shapeOf(n hypervisor.NIC) netShape {
	return netShape{Name: n.Network, Mode: n.Mode, Prefix: n.Prefix, Gateway: n.Gateway}
}

// reservation is one NIC's DHCP (and, with a host name, DNS) entry.
type reservation struct {
	MAC      string
	IP       netip.Addr
	Hostname string
}

func reservationOf(n hypervisor.NIC) reservation {
	return reservation{MAC: n.MAC, IP: n.IP, Hostname: n.Hostname}
}

func (r reservation) dhcpHost() dhcpHostXML {
	return dhcpHostXML{MAC: r.MAC, IP: r.IP.String(), Name: r.Hostname}
}

func (r reservation) dnsHost() dnsHostXML {
	return dnsHostXML{IP: r.IP.String(), Hostnames: []string{r.Hostname}}
}

// buildNetwork is the definition of a managed network with its reservations.
func buildNetwork(s netShape, rs []reservation) networkXML {
	n := networkXML{
		Name:   libvirtNetworkName(s.Name),
		Bridge: networkBridgeXML{Name: bridgeDevice(s.Name), STP: "on", Delay: "0"},
		Domain: &networkDomainXML{Name: s.Name, LocalOnly: "yes"},
		IPs: []networkIPXML{{
			Address: s.Gateway.String(),
			Netmask: hypervisor.Netmask(s.Prefix),
			DHCP:    &networkDHCPXML{},
		}},
	}
	if s.Mode == hypervisor.ModeNAT {
		n.Forward = &networkForwardXML{Mode: "nat"}
	}
	for _, r := range rs {
		n.IPs[0].DHCP.Hosts = append(n.IPs[0].DHCP.Hosts, r.dhcpHost())
		if r.Hostname != "" {
			n.DNS.Hosts = append(n.DNS.Hosts, r.dnsHost())
		}
	}
	return n
}

// definedNetwork is what Flotilla reads back of a defined network.
type definedNetwork struct {
	shape netShape
	hosts []reservation // DHCP hosts
	dns   []dnsHostXML
}

// parseNetwork reads a network's XML as libvirt gives it.
func parseNetwork(name, raw string) (definedNetwork, error) {
	var x networkXML
	if err := xml.Unmarshal([]byte(raw), &x); err != nil {
		return definedNetwork{}, fmt.Errorf("parse network %s: %w", name, err)
	}
	out := definedNetwork{shape: netShape{Name: name, Mode: hypervisor.ModeIsolated}, dns: x.DNS.Hosts}
	if x.Forward != nil {
		out.shape.Mode = hypervisor.NetworkMode(x.Forward.Mode) // "nat", or something Flotilla did not write
	}
	for _, ip := range x.IPs {
		if ip.Family != "" && ip.Family != "ipv4" {
			continue
		}
		gw, err := netip.ParseAddr(ip.Address)
		if err != nil {
			continue
		}
		bits := 0
		if ip.Prefix != "" {
			fmt.Sscanf(ip.Prefix, "%d", &bits)
		} else if m, err := netip.ParseAddr(ip.Netmask); err == nil {
			b := m.As4()
			for _, x := range b {
				for ; x != 0; x <<= 1 {
					bits++
				}
			}
		}
		out.shape.Gateway = gw
		out.shape.Prefix, _ = gw.Prefix(bits)
		if ip.DHCP != nil {
			for _, h := range ip.DHCP.Hosts {
				a, err := netip.ParseAddr(h.IP)
				if err != nil {
					continue
				}
				out.hosts = append(out.hosts, reservation{MAC: h.MAC, IP: a, Hostname: h.Name})
			}
		}
		break
	}
	return out, nil
}

func marshalXML(v any) (string, error) {
	b, err := xml.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode xml: %w", err)
	}
	return string(b), nil
}
