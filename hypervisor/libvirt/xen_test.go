package libvirt

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// hostileTitle needs escaping in both text and attribute positions.
const hostileTitle = `<&"'> ünï`

// TestDomainXMLPassesLibvirtSchema runs Debian's virt-xml-validate (the
// RelaxNG schema libvirt itself ships) on the XML of every domain type,
// booting from a kernel and from the disk. No hypervisor is needed.
func TestDomainXMLPassesLibvirtSchema(t *testing.T) {
	validate := requireValidator(t)
	dir := t.TempDir()

	// The validator must reject a broken document, or its passes prove nothing.
	bad := filepath.Join(dir, "bad.xml")
	doc := marshalTest(t, domainTypeXen, true)
	if err := os.WriteFile(bad, []byte(strings.Replace(doc, `bus="xen"`, `bus="nonsense"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := validate(bad); err == nil {
		t.Fatalf("virt-xml-validate accepted a disk on bus 'nonsense':\n%s", out)
	}

	for _, dt := range []string{domainTypeKVM, domainTypeQEMU, domainTypeXen} {
		for _, kernel := range []bool{true, false} {
			name := dt + "-disk-boot"
			if kernel {
				name = dt + "-kernel-boot"
			}
			t.Run(name, func(t *testing.T) {
				doc := marshalTest(t, dt, kernel)
				file := filepath.Join(dir, name+".xml")
				if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := validate(file); err != nil {
					t.Fatalf("virt-xml-validate %s domain: %v\n%s\n%s", file, err, out, doc)
				}
			})
		}
	}
}

// requireValidator returns a function running `virt-xml-validate FILE
// domain`. The script needs xmllint, which Debian packages apart.
func requireValidator(t *testing.T) func(file string) (string, error) {
	t.Helper()
	for _, tool := range []struct{ bin, pkg string }{
		{"virt-xml-validate", "libvirt-clients"},
		{"xmllint", "libxml2-utils"},
	} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			testenv.Missing(t, tool.bin+" (Debian's "+tool.pkg+"; run scripts/setup-host.sh)")
		}
	}
	return func(file string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "virt-xml-validate", file, "domain").CombinedOutput()
		return string(out), err
	}
}

func marshalTest(t *testing.T, domainType string, kernel bool) string {
	t.Helper()
	p := testParams(hostileTitle, kernel)
	p.DomainType = domainType
	doc, err := marshalDomain(buildDomain(p))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestXenDomainXMLContents(t *testing.T) {
	doc := marshalTest(t, domainTypeXen, true)
	for _, want := range []string{
		`<domain type="xen">`,
		`<title>&lt;&amp;&#34;&#39;&gt; ünï</title>`,
		`<type machine="xenfv">hvm</type>`,
		`<kernel>/img/t/vmlinuz</kernel>`,
		`<initrd>/img/t/initrd.img</initrd>`,
		`<cmdline>console=ttyS0 quiet</cmdline>`,
		`<pae></pae>`,
		`<driver name="qemu" type="qcow2"></driver>`,
		`<source file="/disks/vm-1.qcow2"></source>`,
		`<target dev="xvda" bus="xen"></target>`,
		`<source path="/run/f/vm-1.console.log" append="on"></source>`,
		`<target type="serial" port="0"></target>`,
		`<source mode="bind" path="/run/f/vm-1.guest.sock"></source>`,
		`<target type="xen" name="org.flotilla.guest.0"></target>`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %s in\n%s", want, doc)
		}
	}
	// libxl has neither virtio disks nor virtio-serial.
	if strings.Contains(doc, "virtio") {
		t.Errorf("xen domain mentions virtio:\n%s", doc)
	}
	// The rest of the document has the same shape as QEMU's, plus <pae/>.
	want := append(shape(t, marshalTest(t, domainTypeQEMU, true)), "domain/features/pae")
	got := shape(t, doc)
	slices.Sort(want)
	if !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("xen shape differs from qemu's beyond <pae/>:\n got %v\nwant %v", got, want)
	}
	if strings.Contains(marshalTest(t, domainTypeKVM, true), "<pae") {
		t.Errorf("kvm domain must not gain <pae/>")
	}
}

// TestDomainTypeSelectsURI connects a driver of each domain type to a fake
// libvirtd and checks the URI it opens and the Kind it reports.
func TestDomainTypeSelectsURI(t *testing.T) {
	for _, tc := range []struct{ domainType, uri string }{
		{domainTypeXen, "xen:///system"},
		{domainTypeKVM, "qemu:///system"},
		{domainTypeQEMU, "qemu:///system"},
	} {
		t.Run(tc.domainType, func(t *testing.T) {
			if got := connectURI(tc.domainType); string(got) != tc.uri {
				t.Errorf("connectURI(%q) = %q, want %q", tc.domainType, got, tc.uri)
			}
			socket, opened := fakeLibvirtd(t)
			runDir := shortTempDir(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d, err := New(ctx, Config{
				Socket: socket, ImageDir: t.TempDir(), DiskDir: t.TempDir(), RunDir: runDir,
				DomainType: tc.domainType, Logger: slog.New(slog.NewTextHandler(newTestWriter(t), nil)),
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer d.Close()
			select {
			case uri := <-opened:
				if uri != tc.uri {
					t.Errorf("driver opened %q, want %q", uri, tc.uri)
				}
			case <-ctx.Done():
				t.Fatal("the fake libvirtd saw no connect-open")
			}
			if d.Kind() != tc.domainType {
				t.Errorf("Kind() = %q, want %q", d.Kind(), tc.domainType)
			}
		})
	}
}

func TestUnknownDomainTypeRefused(t *testing.T) {
	_, err := Config{DomainType: "hyperv", RunDir: shortTempDir(t), DiskDir: t.TempDir()}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "want kvm, qemu or xen") {
		t.Fatalf("withDefaults: %v", err)
	}
}

// shortTempDir is a temporary run dir short enough for guest sockets
// (t.TempDir's paths are too long).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "flx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// libvirt RPC procedure numbers (remote_protocol.x) the fake answers with a body.
const (
	procConnectOpen          = 1
	procAuthList             = 66
	procConnectGetLibVersion = 157
)

// fakeLibvirtd serves just enough of libvirt's RPC protocol for New and
// Close, and sends on the returned channel each URI a client opens.
func fakeLibvirtd(t *testing.T) (socket string, opened <-chan string) {
	t.Helper()
	socket = filepath.Join(shortTempDir(t), "sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	uris := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFakeLibvirt(c, uris)
		}
	}()
	return socket, uris
}

// serveFakeLibvirt answers every call with success. A packet is a 4-byte
// length (counting itself), a 24-byte header (program, version, procedure,
// type, serial, status) and an XDR body.
func serveFakeLibvirt(c net.Conn, uris chan<- string) {
	defer c.Close()
	for {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil || n < 28 {
			return
		}
		pkt := make([]byte, n-4)
		if _, err := io.ReadFull(c, pkt); err != nil {
			return
		}
		body := pkt[24:]
		var reply []byte
		switch binary.BigEndian.Uint32(pkt[8:12]) {
		case procConnectOpen:
			// remote_connect_open_args: optional string (present flag,
			// length, bytes padded to 4), then flags.
			uri := "<unparsable connect-open body>"
			if len(body) >= 8 {
				if l := binary.BigEndian.Uint32(body[4:8]); uint64(l) <= uint64(len(body)-8) {
					uri = string(body[8 : 8+l])
				}
			}
			select {
			case uris <- uri:
			default: // nobody is counting any more
			}
		case procAuthList:
			reply = []byte{0, 0, 0, 0} // no authentication
		case procConnectGetLibVersion:
			reply = make([]byte, 8)
		}
		hdr := append([]byte(nil), pkt[:24]...)
		binary.BigEndian.PutUint32(hdr[12:16], 1) // type: reply
		binary.BigEndian.PutUint32(hdr[20:24], 0) // status: ok
		out := binary.BigEndian.AppendUint32(nil, uint32(4+len(hdr)+len(reply)))
		if _, err := c.Write(append(append(out, hdr...), reply...)); err != nil {
			return
		}
	}
}
