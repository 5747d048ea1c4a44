package libvirt

import (
	"context"
	"encoding/xml"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func testNICs() []hypervisor.NIC {
	return []hypervisor.NIC{
		{Network: "web", Mode: hypervisor.ModeNAT, Prefix: netip.MustParsePrefix("198.19.20.0/24"),
			Gateway: netip.MustParseAddr("198.19.20.1"), IP: netip.MustParseAddr("198.19.20.7"), MAC: "52:54:00:00:20:07", Hostname: "vm-one"},
		{Network: "lan", Mode: hypervisor.ModeBridge, Bridge: "br0", Prefix: netip.MustParsePrefix("198.19.32.0/22"),
			Gateway: netip.MustParseAddr("198.19.32.1"), IP: netip.MustParseAddr("198.19.33.9"), MAC: "52:54:00:00:33:09"},
	}
}

func TestDomainXMLWithNICs(t *testing.T) {
	cases := []struct {
		name       string
		domainType string
		kernel     bool
		nics       []hypervisor.NIC
		seed       bool
		want       []string // substrings of the document
		wantNot    []string
	}{
		{name: "kvm nat and bridge", domainType: domainTypeKVM, nics: testNICs(), seed: true, want: []string{
			`<interface type="network"><mac address="52:54:00:00:20:07"></mac><source network="flotilla-web"></source><model type="virtio"></model></interface>`,
			`<interface type="bridge"><mac address="52:54:00:00:33:09"></mac><source bridge="br0"></source><model type="virtio"></model></interface>`,
			`<disk type="file" device="disk"><driver name="qemu" type="raw"></driver><source file="/disks/vm-1.seed.iso"></source><target dev="vdb" bus="virtio"></target><readonly></readonly></disk>`,
			`<nics xmlns="` + metadataNS + `"><nic network="web" mode="nat" cidr="198.19.20.0/24" gateway="198.19.20.1" ip="198.19.20.7" mac="52:54:00:00:20:07" hostname="vm-one"></nic>`,
			`<boot dev="hd">`,
		}, wantNot: []string{"<cmdline>"}},
		{name: "xen has no model", domainType: domainTypeXen, nics: testNICs()[:1], seed: true, want: []string{
			`<interface type="network"><mac address="52:54:00:00:20:07"></mac><source network="flotilla-web"></source></interface>`,
			`<target dev="xvdb" bus="xen">`,
		}, wantNot: []string{"<model"}},
		{name: "kernel gets ip=", domainType: domainTypeQEMU, kernel: true, nics: testNICs(), want: []string{
			`<cmdline>console=ttyS0 quiet ip=198.19.20.7::198.19.20.1:255.255.255.0:vm-one:eth0:off</cmdline>`,
		}, wantNot: []string{"seed.iso"}},
		{name: "no nics", domainType: domainTypeKVM, kernel: true, want: []string{`<cmdline>console=ttyS0 quiet</cmdline>`},
			wantNot: []string{"<interface", "<metadata", "seed.iso", "ip="}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := testParams("t", c.kernel)
			p.DomainType, p.NICs = c.domainType, c.nics
			if c.seed {
				p.Seed = p.Paths.Seed
			}
			b, err := xml.Marshal(buildDomain(p))
			if err != nil {
				t.Fatal(err)
			}
			doc := string(b)
			for _, w := range c.want {
				if !strings.Contains(doc, w) {
					t.Errorf("document lacks %s\n%s", w, doc)
				}
			}
			for _, w := range c.wantNot {
				if strings.Contains(doc, w) {
					t.Errorf("document has %s\n%s", w, doc)
				}
			}

			// What the resize methods read back rebuilds the same document.
			cfg := Config{DomainType: c.domainType, DiskDir: "/disks", RunDir: "/run/f"}
			def, err := parseDefinition(cfg, "vm-1", doc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(def.params.NICs, p.NICs) || def.params.Seed != p.Seed || def.disk != p.Paths.Disk {
				t.Fatalf("read back NICs %+v seed %q disk %q", def.params.NICs, def.params.Seed, def.disk)
			}
			def.params.Image.Dir, def.params.Image.Disk = p.Image.Dir, p.Image.Disk
			again, _ := xml.Marshal(buildDomain(def.params))
			if string(again) != doc {
				t.Fatalf("rebuilt document differs:\n%s\n%s", again, doc)
			}
			same, err := sameDefinition(doc, doc)
			if err != nil || !same {
				t.Fatalf("sameDefinition of itself: %v %v", same, err)
			}
		})
	}
}

func TestDefinitionRefusesEditedMetadata(t *testing.T) {
	p := testParams("t", false)
	p.NICs = testNICs()
	b, _ := xml.Marshal(buildDomain(p))
	cfg := Config{DomainType: domainTypeKVM, DiskDir: "/disks", RunDir: "/run/f"}
	for _, edit := range []struct{ from, to string }{
		{`ip="198.19.20.7"`, `ip="10.0.0.7"`},
		{`mac="52:54:00:00:20:07"`, `mac="x"`},
		{`network="web"`, `network="Web'"`},
		{`bridge="br0"`, `bridge="br0;reboot"`},
	} {
		doc := strings.Replace(string(b), edit.from, edit.to, 1)
		if _, err := parseDefinition(cfg, "vm-1", doc); err == nil {
			t.Errorf("metadata with %s accepted", edit.to)
		}
	}
	other := testParams("t", false)
	other.NICs = testNICs()[:1]
	ob, _ := xml.Marshal(buildDomain(other))
	if same, _ := sameDefinition(string(b), string(ob)); same {
		t.Error("definitions with different NICs compare equal")
	}
}

func TestNetworkXML(t *testing.T) {
	nat := netShape{Name: "web", Mode: hypervisor.ModeNAT, Prefix: netip.MustParsePrefix("198.19.20.0/24"), Gateway: netip.MustParseAddr("198.19.20.1")}
	iso := nat
	iso.Mode = hypervisor.ModeIsolated
	rs := []reservation{
		{MAC: "52:54:00:00:20:07", IP: netip.MustParseAddr("198.19.20.7"), Hostname: "vm-one"},
		{MAC: "52:54:00:00:20:08", IP: netip.MustParseAddr("198.19.20.8")},
	}
	cases := []struct {
		name    string
		shape   netShape
		want    []string
		wantNot []string
	}{
		{"nat", nat, []string{
			`<name>flotilla-web</name>`, `<forward mode="nat"></forward>`,
			`<bridge name="flt` + bridgeDevice("web")[3:] + `" stp="on" delay="0"></bridge>`,
			`<domain name="web" localOnly="yes"></domain>`,
			`<dns><host ip="198.19.20.7"><hostname>vm-one</hostname></host></dns>`,
			`<ip address="198.19.20.1" netmask="255.255.255.0"><dhcp><host mac="52:54:00:00:20:07" ip="198.19.20.7" name="vm-one"></host><host mac="52:54:00:00:20:08" ip="198.19.20.8"></host></dhcp></ip>`,
		}, []string{"<range"}},
		{"isolated", iso, []string{`<name>flotilla-web</name>`}, []string{"<forward", "<range"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc, err := marshalXML(buildNetwork(c.shape, rs))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(doc, w) {
					t.Errorf("network lacks %s\n%s", w, doc)
				}
			}
			for _, w := range c.wantNot {
				if strings.Contains(doc, w) {
					t.Errorf("network has %s\n%s", w, doc)
				}
			}
			def, err := parseNetwork("web", doc)
			if err != nil {
				t.Fatal(err)
			}
			if def.shape != c.shape || !reflect.DeepEqual(def.hosts, rs) || len(def.dns) != 1 {
				t.Fatalf("read back %+v", def)
			}
		})
	}
	// libvirt's own rendering: single quotes, a prefix attribute, an IPv6 block first.
	def, err := parseNetwork("web", `<network><name>flotilla-web</name><forward mode='nat'/><ip family='ipv6' address='fd00::1' prefix='64'/>`+
		`<ip address='198.19.20.1' prefix='22'><dhcp><host mac='52:54:00:00:20:07' name='vm-one' ip='198.19.20.7'/></dhcp></ip></network>`)
	if err != nil || def.shape.Prefix != netip.MustParsePrefix("198.19.20.0/22") || def.shape.Gateway != nat.Gateway || len(def.hosts) != 1 {
		t.Fatalf("libvirt's XML read as %+v, %v", def, err)
	}
	if b := bridgeDevice(strings.Repeat("n", 32)); len(b) != 11 || !hypervisor.BridgePattern.MatchString(b) {
		t.Fatalf("bridge device %q", b)
	}
}

func readSeed(t *testing.T, path string) (label string, files map[string]string) {
	t.Helper()
	b, err := file.OpenFromPath(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fs, err := iso9660.Read(b, 0, 0, 2048)
	if err != nil {
		t.Fatal(err)
	}
	files = map[string]string{}
	for _, name := range []string{"meta-data", "user-data", "network-config"} {
		f, err := fs.OpenFile("/"+name, os.O_RDONLY)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(c)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw[16*2048+40 : 16*2048+72]), files
}

func TestSeed(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 \"quoted\" user@host"
	cases := []struct {
		name string
		spec hypervisor.DomainSpec
		want map[string]string
	}{
		{"keys only", hypervisor.DomainSpec{ID: "123", NICs: testNICs(), Seed: &hypervisor.GuestSeed{Hostname: "web-1", SSHAuthorizedKeys: []string{key}}},
			map[string]string{
				"meta-data": "instance-id: \"123\"\nlocal-hostname: \"web-1\"\npublic-keys:\n  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 \\\"quoted\\\" user@host\"\n",
				"user-data": "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 \\\"quoted\\\" user@host\"\n",
				"network-config": "version: 2\nethernets:\n" +
					"  nic0:\n    match:\n      macaddress: \"52:54:00:00:20:07\"\n    addresses:\n      - \"198.19.20.7/24\"\n    gateway4: \"198.19.20.1\"\n" +
					"    nameservers:\n      addresses:\n        - \"198.19.20.1\"\n      search:\n        - \"web\"\n" +
					"  nic1:\n    match:\n      macaddress: \"52:54:00:00:33:09\"\n    addresses:\n      - \"198.19.33.9/22\"\n",
			}},
		{"user data kept verbatim, keys in meta-data", hypervisor.DomainSpec{ID: "vm-2", Seed: &hypervisor.GuestSeed{UserData: "#!/bin/sh\necho hi\n", SSHAuthorizedKeys: []string{"ssh-rsa A"}}},
			map[string]string{
				"meta-data":      "instance-id: \"vm-2\"\nlocal-hostname: \"vm-2\"\npublic-keys:\n  - \"ssh-rsa A\"\n",
				"user-data":      "#!/bin/sh\necho hi\n",
				"network-config": "version: 2\nethernets: {}\n",
			}},
		{"nics only: hostname from the first", hypervisor.DomainSpec{ID: "vm-3", NICs: testNICs()[:1]},
			map[string]string{"meta-data": "instance-id: \"vm-3\"\nlocal-hostname: \"vm-one\"\n", "user-data": "#cloud-config\n"}},
		{"user data at the limit", hypervisor.DomainSpec{ID: "vm-4", Seed: &hypervisor.GuestSeed{UserData: strings.Repeat("x", hypervisor.MaxUserDataBytes)}},
			map[string]string{"user-data": strings.Repeat("x", hypervisor.MaxUserDataBytes)}},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.spec.ID+".seed.iso")
			for range 2 { // a second write replaces the first
				if err := writeSeed(path, c.spec); err != nil {
					t.Fatal(err)
				}
			}
			label, files := readSeed(t, path)
			if label != "cidata"+strings.Repeat(" ", 26) {
				t.Errorf("volume id %q", label)
			}
			for name, want := range c.want {
				if files[name] != want {
					t.Errorf("%s:\n%s\nwant:\n%s", name, files[name], want)
				}
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
				t.Errorf("seed file %v %v", st, err)
			}
		})
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestIPArg(t *testing.T) {
	nics := testNICs()
	if got := withoutIPArg(withIPArg("", nics, "vm-1"), nics, "vm-1"); got != "" {
		t.Errorf("empty cmdline round trip: %q", got)
	}
	nics[0].Hostname = ""
	if got := ipArg(nics, "vm-1"); got != "ip=198.19.20.7::198.19.20.1:255.255.255.0:vm-1:eth0:off" {
		t.Errorf("ipArg %q", got)
	}
}

// The networked domain XML (interfaces, metadata, seed disk) of every
// domain type, and the network XML, pass libvirt's own schema.
func TestNetworkXMLPassesLibvirtSchema(t *testing.T) {
	validate := requireValidator(t)
	dir := t.TempDir()
	for _, dt := range []string{domainTypeKVM, domainTypeQEMU, domainTypeXen} {
		p := testParams(hostileTitle, true)
		p.DomainType, p.NICs, p.Seed = dt, testNICs(), p.Paths.Seed
		doc, err := marshalDomain(buildDomain(p))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, dt+".xml")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := validate(file); err != nil {
			t.Errorf("virt-xml-validate %s domain: %v\n%s\n%s", dt, err, out, doc)
		}
	}
	for _, mode := range []hypervisor.NetworkMode{hypervisor.ModeNAT, hypervisor.ModeIsolated} {
		nic := testNICs()[0]
		nic.Mode = mode
		doc, err := marshalXML(buildNetwork(shapeOf(nic), []reservation{reservationOf(nic), {MAC: "52:54:00:00:00:01", IP: nic.IP.Next()}}))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, string(mode)+"-network.xml")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, "virt-xml-validate", file, "network").CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("virt-xml-validate %s network: %v\n%s\n%s", mode, err, out, doc)
		}
	}
}
