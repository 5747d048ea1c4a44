package libvirt

import (
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"path/filepath"
)

// The structs below cover exactly the part of libvirt's domain schema that
// Flotilla writes. Every value goes through encoding/xml, so user text (the
// display name) is escaped and can never change the document's structure.

type domainXML struct {
	XMLName    xml.Name    `xml:"domain"`
	Type       string      `xml:"type,attr"`
	Name       string      `xml:"name"`
	UUID       string      `xml:"uuid,omitempty"`
	Title      string      `xml:"title,omitempty"`
	Memory     memoryXML   `xml:"memory"`
	VCPU       uint32      `xml:"vcpu"`
	OS         osXML       `xml:"os"`
	Features   featuresXML `xml:"features"`
	OnPoweroff string      `xml:"on_poweroff"`
	OnReboot   string      `xml:"on_reboot"`
	OnCrash    string      `xml:"on_crash"`
	Devices    devicesXML  `xml:"devices"`
}

type memoryXML struct {
	Unit  string `xml:"unit,attr"`
	Value uint64 `xml:",chardata"`
}

type osXML struct {
	Type    osTypeXML `xml:"type"`
	Kernel  string    `xml:"kernel,omitempty"`
	Initrd  string    `xml:"initrd,omitempty"`
	Cmdline string    `xml:"cmdline,omitempty"`
	Boot    *bootXML  `xml:"boot,omitempty"`
}

type osTypeXML struct {
	Machine string `xml:"machine,attr,omitempty"`
	Value   string `xml:",chardata"`
}

type bootXML struct {
	Dev string `xml:"dev,attr"`
}

type featuresXML struct {
	ACPI *struct{} `xml:"acpi"`
	APIC *struct{} `xml:"apic"`
}

type devicesXML struct {
	Disks    []diskXML    `xml:"disk"`
	Serials  []charDevXML `xml:"serial"`
	Consoles []charDevXML `xml:"console"`
	Channels []charDevXML `xml:"channel"`
}

type diskXML struct {
	Type   string        `xml:"type,attr"`
	Device string        `xml:"device,attr"`
	Driver diskDriverXML `xml:"driver"`
	Source fileSourceXML `xml:"source"`
	Target diskTargetXML `xml:"target"`
}

type diskDriverXML struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

type fileSourceXML struct {
	File string `xml:"file,attr"`
}

type diskTargetXML struct {
	Dev string `xml:"dev,attr"`
	Bus string `xml:"bus,attr"`
}

// charDevXML is a serial port, console or channel.
type charDevXML struct {
	Type   string           `xml:"type,attr"`
	Source charDevSourceXML `xml:"source"`
	Target charDevTargetXML `xml:"target"`
}

type charDevSourceXML struct {
	Mode string `xml:"mode,attr,omitempty"`
	Path string `xml:"path,attr"`
	// Append keeps the console log across restarts and restores (libvirt
	// truncates it otherwise).
	Append string `xml:"append,attr,omitempty"`
}

type charDevTargetXML struct {
	Type string `xml:"type,attr,omitempty"`
	Port *int   `xml:"port,attr,omitempty"`
	Name string `xml:"name,attr,omitempty"`
}

// guestChannelName is the virtio-serial port on which the guest reports
// readiness.
const guestChannelName = "org.flotilla.guest.0"

// instancePaths are the host files belonging to one instance.
type instancePaths struct {
	Disk       string // copy-on-write overlay
	ConsoleLog string // serial console output
	GuestSock  string // host end of the guest channel
}

func pathsFor(diskDir, runDir, id string) instancePaths {
	return instancePaths{
		Disk:       filepath.Join(diskDir, id+".qcow2"),
		ConsoleLog: filepath.Join(runDir, id+".console.log"),
		GuestSock:  filepath.Join(runDir, id+".guest.sock"),
	}
}

// domainUUID derives the UUID from the id, so that redefining the same
// instance yields the same domain and two ids never share one.
func domainUUID(id string) string {
	h := sha256.Sum256([]byte("flotilla-domain:" + id))
	h[6] = h[6]&0x0f | 0x80 // version 8 (custom)
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// domainParams is everything buildDomainXML needs, already validated.
type domainParams struct {
	DomainType string
	ID         string
	Title      string
	VCPUs      uint32
	MemoryMiB  uint64
	Image      image
	Paths      instancePaths
}

func buildDomain(p domainParams) domainXML {
	port0 := 0
	d := domainXML{
		Type:       p.DomainType,
		Name:       domainName(p.ID),
		UUID:       domainUUID(p.ID),
		Title:      p.Title,
		Memory:     memoryXML{Unit: "MiB", Value: p.MemoryMiB},
		VCPU:       p.VCPUs,
		OS:         osXML{Type: osTypeXML{Machine: "pc", Value: "hvm"}},
		Features:   featuresXML{ACPI: &struct{}{}, APIC: &struct{}{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: devicesXML{
			Disks: []diskXML{{
				Type:   "file",
				Device: "disk",
				Driver: diskDriverXML{Name: "qemu", Type: "qcow2"},
				Source: fileSourceXML{File: p.Paths.Disk},
				Target: diskTargetXML{Dev: "vda", Bus: "virtio"},
			}},
			Serials: []charDevXML{{
				Type:   "file",
				Source: charDevSourceXML{Path: p.Paths.ConsoleLog, Append: "on"},
				Target: charDevTargetXML{Port: &port0},
			}},
			Consoles: []charDevXML{{
				Type:   "file",
				Source: charDevSourceXML{Path: p.Paths.ConsoleLog, Append: "on"},
				Target: charDevTargetXML{Type: "serial", Port: &port0},
			}},
			Channels: []charDevXML{{
				Type:   "unix",
				Source: charDevSourceXML{Mode: "bind", Path: p.Paths.GuestSock},
				Target: charDevTargetXML{Type: "virtio", Name: guestChannelName},
			}},
		},
	}
	if p.Image.Kernel != "" {
		d.OS.Kernel = p.Image.Kernel
		d.OS.Initrd = p.Image.Initrd
		d.OS.Cmdline = p.Image.Cmdline
	} else {
		d.OS.Boot = &bootXML{Dev: "hd"}
	}
	return d
}

// marshalDomain renders the domain definition handed to DomainDefineXML.
func marshalDomain(d domainXML) (string, error) {
	b, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode domain xml: %w", err)
	}
	return string(b), nil
}
