package libvirt

import (
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"path/filepath"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The structs below cover exactly the part of libvirt's domain schema that
// Flotilla writes. Every value goes through encoding/xml, so user text (the
// display name) is escaped and can never change the document's structure.

type domainXML struct {
	XMLName    xml.Name     `xml:"domain"`
	Type       string       `xml:"type,attr"`
	Name       string       `xml:"name"`
	UUID       string       `xml:"uuid,omitempty"`
	Title      string       `xml:"title,omitempty"`
	Metadata   *metadataXML `xml:"metadata,omitempty"`
	Memory     memoryXML    `xml:"memory"`
	VCPU       uint32       `xml:"vcpu"`
	OS         osXML        `xml:"os"`
	Features   featuresXML  `xml:"features"`
	OnPoweroff string       `xml:"on_poweroff"`
	OnReboot   string       `xml:"on_reboot"`
	OnCrash    string       `xml:"on_crash"`
	Devices    devicesXML   `xml:"devices"`
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
	PAE  *struct{} `xml:"pae"` // nil (left out) unless the layout asks for it
}

type devicesXML struct {
	Disks      []diskXML      `xml:"disk"`
	Interfaces []interfaceXML `xml:"interface"`
	Serials    []charDevXML   `xml:"serial"`
	Consoles   []charDevXML   `xml:"console"`
	Channels   []charDevXML   `xml:"channel"`
}

type diskXML struct {
	Type     string        `xml:"type,attr"`
	Device   string        `xml:"device,attr"`
	Driver   diskDriverXML `xml:"driver"`
	Source   fileSourceXML `xml:"source"`
	Target   diskTargetXML `xml:"target"`
	ReadOnly *struct{}     `xml:"readonly"` // the seed disk
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

// guestChannelName is the channel (a virtio-serial port, or a Xen PV
// channel) on which the guest reports readiness.
const guestChannelName = "org.flotilla.guest.0"

// instancePaths are the host files belonging to one instance. This is the
// one place that names them; Delete removes every one of them (and the
// temporary files of tempPatterns).
//
//	<id>.qcow2                 the disk overlay over the image; once frozen, the base
//	<id>.top.qcow2             a frozen disk's top, over <id>.qcow2 (FreezeDisk);
//	                           once refrozen, the mid (immutable)
//	<id>.top2.qcow2            a refrozen disk's top, over <id>.top.qcow2 (RefreezeDisk)
//	<id>.original.qcow2        the disk Reshape kept (until DropOriginal or Unshape)
//	.<id>.incoming-base.qcow2  a staged base or whole disk, over the image (ReceiveDisk)
//	.<id>.incoming-mid.qcow2   a received mid, over the staged base, while it is
//	                           merged into it (ReceiveDisk)
//	.<id>.incoming-top.qcow2   a staged top, over the staged base (ReceiveDisk)
//	.<id>.import-*.qcow2       a layer being received (receiveDisk)
//	.<id>.reshape-*.qcow2      Reshape's copy being made
//	<id>.rescue.qcow2          the rescue system's disk, over the rescue image (RescueDomain)
//	<id>.seed.iso              the cloud-init seed, read-only to the guest
//	.<id>.seed-*.iso           a seed being written
type instancePaths struct {
	Disk         string // copy-on-write overlay (the base of a frozen disk)
	Top          string // a frozen disk's top layer; a refrozen disk's mid
	Top2         string // a refrozen disk's top layer
	Original     string // the disk Reshape kept
	IncomingBase string // a staged base or whole disk
	IncomingMid  string // a received mid being merged into the staged base
	IncomingTop  string // a staged top
	Seed         string // cloud-init NoCloud seed image (seed.go)
	Rescue       string // the rescue system's disk (RescueDomain)
	ConsoleLog   string // serial console output
	GuestSock    string // host end of the guest channel
}

func pathsFor(diskDir, runDir, id string) instancePaths {
	return instancePaths{
		Disk:         filepath.Join(diskDir, id+".qcow2"),
		Top:          filepath.Join(diskDir, id+".top.qcow2"),
		Top2:         filepath.Join(diskDir, id+".top2.qcow2"),
		Original:     filepath.Join(diskDir, id+".original.qcow2"),
		IncomingBase: filepath.Join(diskDir, "."+id+".incoming-base.qcow2"),
		IncomingMid:  filepath.Join(diskDir, "."+id+".incoming-mid.qcow2"),
		IncomingTop:  filepath.Join(diskDir, "."+id+".incoming-top.qcow2"),
		Seed:         filepath.Join(diskDir, id+".seed.iso"),
		Rescue:       filepath.Join(diskDir, id+".rescue.qcow2"),
		ConsoleLog:   filepath.Join(runDir, id+".console.log"),
		GuestSock:    filepath.Join(runDir, id+".guest.sock"),
	}
}

// tempPatterns are the globs of an instance's temporary files in diskDir.
func tempPatterns(diskDir, id string) []string {
	return []string{
		filepath.Join(diskDir, "."+id+".import-*.qcow2"),
		filepath.Join(diskDir, "."+id+".reshape-*.qcow2"),
		filepath.Join(diskDir, "."+id+".seed-*.iso"),
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

// Domain types: the <domain type> attribute and the driver's Kind.
const (
	domainTypeKVM  = "kvm"
	domainTypeQEMU = "qemu" // QEMU's software emulation
	domainTypeXen  = "xen"  // Xen through libvirt's libxl driver
)

// guestLayout is the part of the domain XML that depends on the hypervisor.
type guestLayout struct {
	Machine       string // <os><type machine=...>
	PAE           bool   // add <pae/>
	DiskDev       string
	SeedDev       string // the seed disk, on DiskBus
	DiskBus       string
	NICModel      string // <model type>; empty leaves it to the hypervisor
	ChannelTarget string // target type of the guest channel
}

// qemuLayout serves kvm and qemu: virtio disk and virtio-serial channel.
var qemuLayout = guestLayout{Machine: "pc", DiskDev: "vda", SeedDev: "vdb", DiskBus: "virtio", NICModel: "virtio", ChannelTarget: "virtio"}

// xenLayout is a Xen HVM guest under libxl. HVM rather than PVH because
// only HVM has a device model (QEMU): libxl hands <serial type='file'> to
// it, so the console log stays the file it is under KVM and the image's
// console=ttyS0 keeps working, and an ACPI power button reaches guests
// without Xen PV drivers (the test guest powers off on it). PVH has
// neither: its console is the Xen PV console (hvc0), a pty that libvirt
// cannot send to a file. libxl passes direct kernel boot (kernel, initrd,
// cmdline) to HVM guests as it does to PV ones.
//   - machine xenfv is libxl's name for an HVM guest ("pc" is QEMU's).
//   - <pae/>: libvirt's libxl driver turns PAE off unless it is listed,
//     and a 64-bit kernel does not boot without it.
//   - the disk is a Xen PV disk (xvda, bus xen); driver qemu with type
//     qcow2 selects libxl's qdisk backend, which reads qcow2 overlays.
//   - libxl ignores append='on' (QEMU gets plain file:PATH), so a Xen
//     guest's console log starts afresh each time its QEMU starts.
//   - libxl has no virtio-serial: the guest channel is a Xen PV channel
//     (target type xen) on the same host socket and name. The guest sees
//     it as a named Xen console, not as a virtio port.
//   - NICs have no <model>: libxl then gives an HVM guest an emulated NIC
//     and a Xen PV one (vif) for the same MAC, and a guest with PV drivers
//     unplugs the emulated one.
var xenLayout = guestLayout{Machine: "xenfv", PAE: true, DiskDev: "xvda", SeedDev: "xvdb", DiskBus: "xen", ChannelTarget: "xen"}

func layoutFor(domainType string) guestLayout {
	if domainType == domainTypeXen {
		return xenLayout
	}
	return qemuLayout
}

// domainParams is everything buildDomainXML needs, already validated.
type domainParams struct {
	DomainType string // domainTypeKVM, domainTypeQEMU or domainTypeXen
	ID         string
	Title      string
	VCPUs      uint32
	MemoryMiB  uint64
	Image      image
	Paths      instancePaths
	NICs       []hypervisor.NIC // validated; kept in <metadata> too
	// Seed is the path of the cloud-init seed image, attached read-only;
	// empty when the instance has none.
	Seed string
	// Rescue: the domain boots the rescue system from Paths.Rescue, the
	// instance's disk attached second (in the seed's place).
	Rescue bool
}

func buildDomain(p domainParams) domainXML {
	port0 := 0
	lay := layoutFor(p.DomainType)
	d := domainXML{
		Type:       p.DomainType,
		Name:       domainName(p.ID),
		UUID:       domainUUID(p.ID),
		Title:      p.Title,
		Memory:     memoryXML{Unit: "MiB", Value: p.MemoryMiB},
		VCPU:       p.VCPUs,
		OS:         osXML{Type: osTypeXML{Machine: lay.Machine, Value: "hvm"}},
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
				Target: diskTargetXML{Dev: lay.DiskDev, Bus: lay.DiskBus},
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
				Target: charDevTargetXML{Type: lay.ChannelTarget, Name: guestChannelName},
			}},
		},
	}
	if lay.PAE {
		d.Features.PAE = &struct{}{}
	}
	if p.Rescue {
		own := d.Devices.Disks[0]
		own.Target.Dev = lay.SeedDev
		d.Devices.Disks[0].Source.File = p.Paths.Rescue
		d.Devices.Disks = append(d.Devices.Disks, own)
	} else if p.Seed != "" {
		d.Devices.Disks = append(d.Devices.Disks, diskXML{
			Type:     "file",
			Device:   "disk",
			Driver:   diskDriverXML{Name: "qemu", Type: "raw"},
			Source:   fileSourceXML{File: p.Seed},
			Target:   diskTargetXML{Dev: lay.SeedDev, Bus: lay.DiskBus},
			ReadOnly: &struct{}{},
		})
	}
	for _, n := range p.NICs {
		d.Devices.Interfaces = append(d.Devices.Interfaces, buildInterface(n, lay))
	}
	if len(p.NICs) > 0 {
		d.Metadata = &metadataXML{NICs: nicsMetadata(p.NICs)}
	}
	if p.Image.Kernel != "" {
		d.OS.Kernel = p.Image.Kernel
		d.OS.Initrd = p.Image.Initrd
		d.OS.Cmdline = withIPArg(p.Image.Cmdline, p.NICs, p.ID)
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
