package libvirt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// testNetwork is a nat network's NIC for an instance, on a network whose
// libvirt name starts with "flotilla-t" and whose CIDR is inside
// 198.19.0.0/16 (this host's other networks stay clear of both). The
// network is removed again when the test ends, whatever happened.
func testNetwork(t *testing.T) hypervisor.NIC {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "t" + hex.EncodeToString(b[:3])
	third := 100 + int(b[3])%150
	t.Cleanup(func() {
		virsh(t, "net-destroy", libvirtNetworkName(name))
		virsh(t, "net-undefine", libvirtNetworkName(name))
	})
	return hypervisor.NIC{
		Network: name, Mode: hypervisor.ModeNAT,
		Prefix:   netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", third)),
		Gateway:  netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", third)),
		IP:       netip.MustParseAddr(fmt.Sprintf("198.19.%d.10", third)),
		MAC:      fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]),
		Hostname: "guest",
	}
}

// liveNetwork reads a network through libvirt's API (virsh net-dumpxml):
// its running definition, or with inactive its persistent one; found is
// false when libvirt has no such network.
func liveNetwork(t *testing.T, d *Driver, network string, inactive bool) (def definedNetwork, active, found bool) {
	t.Helper()
	flags := uint32(0)
	if inactive {
		flags = uint32(golibvirt.NetworkXMLInactive)
	}
	err := d.call(ctxT(t, 10*time.Second), func(l *golibvirt.Libvirt) error {
		nw, err := l.NetworkLookupByName(libvirtNetworkName(network))
		if err != nil {
			return err
		}
		raw, err := l.NetworkGetXMLDesc(nw, flags)
		if err != nil {
			return err
		}
		a, err := l.NetworkIsActive(nw)
		if err != nil {
			return err
		}
		active = a != 0
		def, err = parseNetwork(network, raw)
		return err
	})
	if isCode(err, golibvirt.ErrNoNetwork) {
		return definedNetwork{}, false, false
	}
	if err != nil {
		t.Fatalf("network %s: %v", network, err)
	}
	return def, active, true
}

// wantReservation checks that the network is up with nic's DHCP and DNS
// entries, running and persistent both.
func wantReservation(t *testing.T, d *Driver, nic hypervisor.NIC) {
	t.Helper()
	for _, inactive := range []bool{false, true} {
		def, active, found := liveNetwork(t, d, nic.Network, inactive)
		if !found || !active {
			t.Fatalf("network %s: found %v, active %v", nic.Network, found, active)
		}
		if def.shape != shapeOf(nic) {
			t.Errorf("network %s is %+v, want %+v", nic.Network, def.shape, shapeOf(nic))
		}
		if !slices.Contains(def.hosts, reservationOf(nic)) {
			t.Errorf("network %s (inactive %v) DHCP hosts %+v lack %+v", nic.Network, inactive, def.hosts, reservationOf(nic))
		}
		if !slices.ContainsFunc(def.dns, func(h dnsHostXML) bool {
			return h.IP == nic.IP.String() && slices.Equal(h.Hostnames, []string{nic.Hostname})
		}) {
			t.Errorf("network %s (inactive %v) DNS hosts %+v lack %s -> %s", nic.Network, inactive, def.dns, nic.Hostname, nic.IP)
		}
	}
}

func TestNetworkOnRealLibvirtNAT(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	paths := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	nic := testNetwork(t)
	spec := testSpec(id)
	spec.NICs = []hypervisor.NIC{nic}
	spec.Seed = &hypervisor.GuestSeed{Hostname: "guest", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAtest flotilla@test"}}

	sup, err := d.Networks(ctxT(t, 5*time.Second))
	if err != nil || !sup.ManagedNetworks {
		t.Fatalf("Networks = %+v, %v", sup, err)
	}
	if err := d.Preflight(ctxT(t, 10*time.Second), spec, false, 0); err != nil {
		t.Fatalf("Preflight: %v", err)
	}
	bridged := spec
	bridged.NICs = []hypervisor.NIC{nic}
	bridged.NICs[0].Mode, bridged.NICs[0].Bridge = hypervisor.ModeBridge, "fltnosuchbr0"
	if err := d.Preflight(ctxT(t, 10*time.Second), bridged, false, 0); !errors.Is(err, hypervisor.ErrNetworkUnavailable) {
		t.Fatalf("Preflight with a missing bridge = %v, want ErrNetworkUnavailable", err)
	}

	if err := d.Create(ctxT(t, 60*time.Second), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	wantState(t, d, id, hypervisor.PowerRunning)
	wantReservation(t, d, nic)

	xmlDesc, _ := virsh(t, "dumpxml", domainName(id))
	for _, want := range []string{
		"<mac address='" + nic.MAC + "'/>", "<source network='" + libvirtNetworkName(nic.Network) + "'",
		"<model type='virtio'/>", paths.Seed, "<target dev='vdb' bus='virtio'/>", "<readonly/>",
		"ip=" + nic.IP.String() + "::" + nic.Gateway.String() + ":255.255.255.0:guest:eth0:off",
	} {
		if !strings.Contains(xmlDesc, want) {
			t.Errorf("domain XML lacks %s:\n%s", want, xmlDesc)
		}
	}
	if _, err := os.Stat(paths.Seed); err != nil {
		t.Fatalf("seed: %v", err)
	}
	_, files := readSeed(t, paths.Seed)
	if !strings.Contains(files["network-config"], nic.MAC) || !strings.Contains(files["meta-data"], `"`+id+`"`) {
		t.Errorf("seed files %v", files)
	}
	took := waitFor(t, 90*time.Second, guestReady+" on the console", func() bool {
		return fileContains(paths.ConsoleLog, guestReady)
	})
	t.Logf("timing: guest with a NIC and a seed ready %s after Create", took.Round(time.Millisecond))

	// A second Create of the running domain changes nothing.
	if err := d.Create(ctxT(t, 30*time.Second), spec); err != nil {
		t.Fatalf("second Create: %v", err)
	}

	if err := d.Delete(ctxT(t, 60*time.Second), id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, found := liveNetwork(t, d, nic.Network, true); found {
		t.Fatalf("network %s still defined after its last instance was deleted", nic.Network)
	}
	if _, err := os.Stat(paths.Seed); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("seed after Delete: %v", err)
	}
}

// Two instances on one network: deleting one drops only its reservation.
// The network destroyed and undefined behind the driver's back (an
// operator's virsh net-destroy, or a libvirtd that lost it) is put back by
// Resync with every reservation.
func TestNetworkOnRealLibvirtResync(t *testing.T) {
	d, _ := newTestDriver(t)
	nic := testNetwork(t)
	ids := []string{testID(t, d), testID(t, d)}
	nics := []hypervisor.NIC{nic, nic}
	nics[1].MAC = "52:54:00:00:00:0f"
	nics[1].IP, nics[1].Hostname = nic.IP.Next(), "second"
	for i, id := range ids {
		spec := testSpec(id)
		spec.NICs = nics[i : i+1]
		if err := d.Create(ctxT(t, 60*time.Second), spec); err != nil {
			t.Fatalf("Create %s: %v", id, err)
		}
	}
	wantReservation(t, d, nics[0])
	wantReservation(t, d, nics[1])

	name := libvirtNetworkName(nic.Network)
	if out, err := virsh(t, "net-destroy", name); err != nil {
		t.Fatalf("net-destroy: %v %s", err, out)
	}
	if out, err := virsh(t, "net-undefine", name); err != nil {
		t.Fatalf("net-undefine: %v %s", err, out)
	}
	if _, _, found := liveNetwork(t, d, nic.Network, true); found {
		t.Fatal("network still there after net-undefine")
	}
	if err := d.Resync(ctxT(t, 30*time.Second)); err != nil {
		t.Fatalf("Resync: %v", err)
	}
	wantReservation(t, d, nics[0])
	wantReservation(t, d, nics[1])

	// Only stopped: Resync starts it again.
	if out, err := virsh(t, "net-destroy", name); err != nil {
		t.Fatalf("net-destroy: %v %s", err, out)
	}
	if err := d.Resync(ctxT(t, 30*time.Second)); err != nil {
		t.Fatalf("Resync: %v", err)
	}
	wantReservation(t, d, nics[1])

	// Stopped while its instance was down: Start puts it back first.
	mustDo(t, "Destroy", d.Destroy(ctxT(t, 30*time.Second), ids[1]))
	if out, err := virsh(t, "net-destroy", name); err != nil {
		t.Fatalf("net-destroy: %v %s", err, out)
	}
	mustDo(t, "Start", d.Start(ctxT(t, 60*time.Second), ids[1]))
	wantReservation(t, d, nics[1])

	if err := d.Delete(ctxT(t, 60*time.Second), ids[0]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	def, _, found := liveNetwork(t, d, nic.Network, true)
	if !found || slices.Contains(def.hosts, reservationOf(nics[0])) || !slices.Contains(def.hosts, reservationOf(nics[1])) {
		t.Fatalf("after deleting the first instance: found %v, hosts %+v", found, def.hosts)
	}
	if err := d.Delete(ctxT(t, 60*time.Second), ids[1]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, found := liveNetwork(t, d, nic.Network, true); found {
		t.Fatal("network still defined after its last instance was deleted")
	}
}

// A resize to "another host" (this one) of an instance with a NIC and a
// seed: the running freeze leaves the seed out of the snapshot, the
// adopted domain gets its own seed and reservation, the reverted source
// keeps its NIC, and a Reshape in place redefines it with the NIC; the
// network goes with the last of them.
func TestNetworkOnRealLibvirtResize(t *testing.T) {
	d, cfg := newTestDriver(t)
	a, b := testID(t, d), testID(t, d)
	pa, pb := pathsFor(cfg.DiskDir, cfg.RunDir, a), pathsFor(cfg.DiskDir, cfg.RunDir, b)
	nicA := testNetwork(t)
	nicB := nicA
	nicB.MAC, nicB.IP, nicB.Hostname = "52:54:00:00:00:0b", nicA.IP.Next(), "moved"
	sa := testSpec(a)
	sa.NICs, sa.Seed = []hypervisor.NIC{nicA}, &hypervisor.GuestSeed{UserData: "#cloud-config\n"}
	bootGuest(t, d, cfg, sa)

	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), a))
	if live, persistent := diskSource(t, a, false), diskSource(t, a, true); live != pa.Top || persistent != pa.Top {
		t.Fatalf("frozen disk: live %s, persistent %s, want %s", live, persistent, pa.Top)
	}
	big := testSpec(b)
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 2, 192, 1
	big.NICs, big.Seed = []hypervisor.NIC{nicB}, sa.Seed
	copyLayer(t, d, a, big, hypervisor.DiskBase)
	mustDo(t, "Shutdown", d.Shutdown(ctxT(t, 60*time.Second), a, 30*time.Second, true))
	copyLayer(t, d, a, big, hypervisor.DiskTop)
	mustDo(t, "AdoptDisk", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	mustDo(t, "AdoptDisk again", d.AdoptDisk(ctxT(t, 60*time.Second), big))
	wantReservation(t, d, nicA)
	wantReservation(t, d, nicB)
	if !exists(pb.Seed) {
		t.Fatal("adopted instance has no seed")
	}
	mustDo(t, "Start b", d.Start(ctxT(t, 60*time.Second), b))
	waitFor(t, 90*time.Second, "b to boot", func() bool { return fileContains(pb.ConsoleLog, guestReady) })

	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 60*time.Second), a))
	out, _ := virsh(t, "dumpxml", "--inactive", domainName(a))
	if !strings.Contains(out, nicA.MAC) || !strings.Contains(out, pa.Seed) || !strings.Contains(out, metadataNS) {
		t.Fatalf("thawed definition lost its NIC, seed or metadata:\n%s", out)
	}
	bigA := sa
	bigA.MemoryMiB = 192
	mustDo(t, "Reshape", d.Reshape(ctxT(t, 60*time.Second), bigA))
	mustDo(t, "Unshape", d.Unshape(ctxT(t, 60*time.Second), sa))
	mustDo(t, "Start a", d.Start(ctxT(t, 60*time.Second), a))
	wantReservation(t, d, nicA)

	for _, id := range []string{a, b} {
		mustDo(t, "Delete", d.Delete(ctxT(t, 60*time.Second), id))
	}
	wantNoFilesOf(t, cfg, a, b)
	if _, _, found := liveNetwork(t, d, nicA.Network, true); found {
		t.Fatal("network still defined after its last instance was deleted")
	}
}

// A cold move to "another host" (this one): the imported domain gets its
// NIC, reservation and a seed made on the target; a retried import of the
// same disk and spec is success, one with another NIC is not.
func TestNetworkOnRealLibvirtMove(t *testing.T) {
	d, cfg := newTestDriver(t)
	src, dst := testID(t, d), testID(t, d)
	nicSrc := testNetwork(t)
	nicDst := nicSrc
	nicDst.MAC, nicDst.IP, nicDst.Hostname = "52:54:00:00:00:0d", nicSrc.IP.Next(), "moved"
	ss, ds := testSpec(src), testSpec(dst)
	ss.NICs, ds.NICs = []hypervisor.NIC{nicSrc}, []hypervisor.NIC{nicDst}
	ds.Seed = &hypervisor.GuestSeed{Hostname: "moved", SSHAuthorizedKeys: []string{"ssh-rsa AAAA k"}}
	mustDo(t, "Create", d.Create(ctxT(t, 60*time.Second), ss))
	mustDo(t, "Destroy", d.Destroy(ctxT(t, 30*time.Second), src))

	importDisk := func(spec hypervisor.DomainSpec) error {
		disk, _, err := d.OpenDisk(ctxT(t, 10*time.Second), src, hypervisor.DiskWhole)
		mustDo(t, "OpenDisk", err)
		defer disk.Close()
		return d.ImportDomain(ctxT(t, 60*time.Second), spec, disk)
	}
	mustDo(t, "ImportDomain", importDisk(ds))
	mustDo(t, "ImportDomain again", importDisk(ds))
	other := ds
	other.NICs = []hypervisor.NIC{nicDst}
	other.NICs[0].MAC = "52:54:00:00:00:0e"
	if err := importDisk(other); !errors.Is(err, hypervisor.ErrAlreadyExists) {
		t.Fatalf("import with another NIC over the imported domain = %v, want ErrAlreadyExists", err)
	}
	wantReservation(t, d, nicDst)
	_, files := readSeed(t, pathsFor(cfg.DiskDir, cfg.RunDir, dst).Seed)
	if !strings.Contains(files["meta-data"], `"moved"`) || !strings.Contains(files["network-config"], nicDst.MAC) {
		t.Fatalf("target seed %v", files)
	}
	for _, id := range []string{src, dst} {
		mustDo(t, "Delete", d.Delete(ctxT(t, 60*time.Second), id))
	}
	if _, _, found := liveNetwork(t, d, nicSrc.Network, true); found {
		t.Fatal("network still defined after its last instance was deleted")
	}
}

// Live freeze, refreeze and thaw of a running instance with a seed: the
// read-only seed stays out of every snapshot and commit, and the
// definition keeps the NIC, the seed and the metadata throughout.
func TestNetworkOnRealLibvirtLiveLayers(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	paths := pathsFor(cfg.DiskDir, cfg.RunDir, id)
	nic := testNetwork(t)
	spec := testSpec(id)
	spec.NICs, spec.Seed = []hypervisor.NIC{nic}, &hypervisor.GuestSeed{Hostname: "layers"}
	bootGuest(t, d, cfg, spec)

	check := func(step string) {
		t.Helper()
		for _, inactive := range []bool{false, true} {
			args := []string{"dumpxml", domainName(id)}
			if inactive {
				args = append(args, "--inactive")
			}
			out, _ := virsh(t, args...)
			if !strings.Contains(out, nic.MAC) || !strings.Contains(out, paths.Seed) || (inactive && !strings.Contains(out, metadataNS)) {
				t.Fatalf("after %s (inactive %v) the definition lost its NIC, seed or metadata:\n%s", step, inactive, out)
			}
		}
		wantState(t, d, id, hypervisor.PowerRunning)
	}
	mustDo(t, "FreezeDisk", d.FreezeDisk(ctxT(t, 30*time.Second), id))
	check("FreezeDisk")
	mustDo(t, "RefreezeDisk", d.RefreezeDisk(ctxT(t, 30*time.Second), id))
	check("RefreezeDisk")
	mustDo(t, "ThawDisk", d.ThawDisk(ctxT(t, 120*time.Second), id))
	check("ThawDisk")
	if diskSource(t, id, false) != paths.Disk || diskSource(t, id, true) != paths.Disk {
		t.Fatal("thawed domain does not run on its overlay")
	}
	mustDo(t, "Delete", d.Delete(ctxT(t, 60*time.Second), id))
	wantNoFilesOf(t, cfg, id)
}
