package libvirt

import (
	"encoding/xml"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func testParams(title string, kernel bool) domainParams {
	img := image{Dir: "/img/t", Disk: "/img/t/disk.qcow2"}
	if kernel {
		img.Kernel, img.Initrd, img.Cmdline = "/img/t/vmlinuz", "/img/t/initrd.img", "console=ttyS0 quiet"
	}
	return domainParams{
		DomainType: "qemu", ID: "vm-1", Title: title, VCPUs: 2, MemoryMiB: 256,
		Image: img, Paths: pathsFor("/disks", "/run/f", "vm-1"),
	}
}

// shape lists the element paths and attribute names of a document, in order:
// two documents with the same shape differ only in text and attribute values.
func shape(t *testing.T, doc string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	var path []string
	var out []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("generated XML does not parse: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			path = append(path, tok.Name.Local)
			p := strings.Join(path, "/")
			out = append(out, p)
			for _, a := range tok.Attr {
				out = append(out, p+"@"+a.Name.Local)
			}
		case xml.EndElement:
			path = path[:len(path)-1]
		case xml.ProcInst, xml.Directive:
			t.Fatalf("unexpected %T in generated XML", tok)
		}
	}
}

func TestDomainXMLEscapesHostileTitle(t *testing.T) {
	hostile := []string{
		`<>&'"`,
		`../../etc/passwd`,
		`</title><devices><disk type='file'><source file='/etc/shadow'/></disk></devices><title>`,
		`]]><!-- x --><?pi?>&amp;&#x41;`,
		`ünïcödé ✓ name`,
	}
	for _, dt := range []string{domainTypeQEMU, domainTypeXen} {
		params := func(title string) domainParams {
			p := testParams(title, true)
			p.DomainType = dt
			return p
		}
		base, err := marshalDomain(buildDomain(params("plain")))
		if err != nil {
			t.Fatal(err)
		}
		baseShape := shape(t, base)

		for _, title := range hostile {
			t.Run(dt+"/"+title, func(t *testing.T) {
				want := buildDomain(params(title))
				doc, err := marshalDomain(want)
				if err != nil {
					t.Fatal(err)
				}
				if got := shape(t, doc); !reflect.DeepEqual(got, baseShape) {
					t.Fatalf("title changed the document structure:\n got %v\nwant %v\n%s", got, baseShape, doc)
				}
				var back domainXML
				if err := xml.Unmarshal([]byte(doc), &back); err != nil {
					t.Fatal(err)
				}
				back.XMLName = want.XMLName
				if !reflect.DeepEqual(back, want) {
					t.Fatalf("round trip differs:\n got %+v\nwant %+v", back, want)
				}
				if back.Title != title {
					t.Fatalf("title = %q, want %q", back.Title, title)
				}
				if back.Name != "flotilla-vm-1" {
					t.Fatalf("name = %q", back.Name)
				}
				if strings.Contains(title, "<") && strings.Contains(doc, title) {
					t.Fatalf("raw title appears unescaped in:\n%s", doc)
				}
			})
		}
	}
}

func TestDomainXMLContents(t *testing.T) {
	doc, err := marshalDomain(buildDomain(testParams("My VM", true)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<domain type="qemu">`,
		`<name>flotilla-vm-1</name>`,
		`<title>My VM</title>`,
		`<memory unit="MiB">256</memory>`,
		`<vcpu>2</vcpu>`,
		`<type machine="pc">hvm</type>`,
		`<kernel>/img/t/vmlinuz</kernel>`,
		`<initrd>/img/t/initrd.img</initrd>`,
		`<cmdline>console=ttyS0 quiet</cmdline>`,
		`<acpi></acpi>`,
		`<on_poweroff>destroy</on_poweroff>`,
		`<on_reboot>restart</on_reboot>`,
		`<on_crash>destroy</on_crash>`,
		`<driver name="qemu" type="qcow2"></driver>`,
		`<source file="/disks/vm-1.qcow2"></source>`,
		`<target dev="vda" bus="virtio"></target>`,
		`<serial type="file">`,
		`<source path="/run/f/vm-1.console.log" append="on"></source>`,
		`<console type="file">`,
		`<target type="serial" port="0"></target>`,
		`<channel type="unix">`,
		`<source mode="bind" path="/run/f/vm-1.guest.sock"></source>`,
		`<target type="virtio" name="org.flotilla.guest.0"></target>`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("missing %s in\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "<boot") {
		t.Errorf("direct kernel boot must not set a boot device")
	}

	noKernel, err := marshalDomain(buildDomain(testParams("x", false)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(noKernel, "<kernel") || !strings.Contains(noKernel, `<boot dev="hd"></boot>`) {
		t.Errorf("disk boot XML wrong:\n%s", noKernel)
	}
	if strings.Contains(noKernel, "<title>") != true {
		t.Errorf("title missing")
	}
}

func TestDomainUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := domainUUID("vm-1"), domainUUID("vm-2")
	if !re.MatchString(a) || !re.MatchString(b) {
		t.Fatalf("bad uuids %q %q", a, b)
	}
	if a == b || a != domainUUID("vm-1") {
		t.Fatalf("uuid must be deterministic per id and differ between ids")
	}
}
