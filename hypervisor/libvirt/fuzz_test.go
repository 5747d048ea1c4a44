package libvirt

import (
	"encoding/xml"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// fuzzParams is a domain with one NIC whose text fields are the fuzzer's.
func fuzzParams(xen, bridged, seed bool, title, network, bridge, mac, hostname, cmdline string) domainParams {
	p := testParams(title, true)
	if xen {
		p.DomainType = domainTypeXen
	}
	p.Image.Cmdline = cmdline
	if seed {
		p.Seed = p.Paths.Seed
	}
	mode := hypervisor.ModeNAT
	if bridged {
		mode = hypervisor.ModeBridge
	}
	p.NICs = []hypervisor.NIC{{Network: network, Mode: mode, Bridge: bridge, MAC: mac, Hostname: hostname,
		Prefix: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.0.1"), IP: netip.MustParseAddr("10.0.0.5")}}
	return p
}

// plain stands for s in the reference document: empty stays empty (the
// attribute or element is then left out), anything else is "x".
func plain(s string) string {
	if s == "" {
		return ""
	}
	return "x"
}

// validXMLText reports whether s is UTF-8 made only of characters XML 1.0
// can carry (others are replaced when escaped, so cannot round-trip).
func validXMLText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !(r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
			return false
		}
	}
	return true
}

// FuzzDomainXML: whatever text reaches the domain builder (the user's
// display name, a network's and a bridge's names, a MAC, a hostname, the
// image's kernel command line), the document is well-formed, has exactly
// the structure of the same domain with plain values (no element or
// attribute injected), holds no processing instruction, directive or
// comment, and gives the display name back as it was.
func FuzzDomainXML(f *testing.F) {
	for _, title := range []string{"plain", `<>&'"`, `</title><devices><disk type='file'><source file='/etc/shadow'/></disk></devices><title>`,
		`]]><!-- x --><?pi?>&amp;&#x41;`, "ünïcödé ✓ name", "\x00\xff", ""} {
		f.Add(false, false, false, title, "lan", "", "52:54:00:12:34:56", "web-1", "console=ttyS0 quiet")
	}
	f.Add(true, true, true, "x", `lan"/><source bridge="evil`, `br0' evil='1`, `52:54:00:12:34:56"><x/>`, `h"><mac address="`, `a]]></cmdline><y/>`)
	f.Fuzz(func(t *testing.T, xen, bridged, seed bool, title, network, bridge, mac, hostname, cmdline string) {
		p := fuzzParams(xen, bridged, seed, title, network, bridge, mac, hostname, cmdline)
		want := buildDomain(p)
		doc, err := marshalDomain(want)
		if err != nil {
			return // refused, not mangled
		}
		ref, err := marshalDomain(buildDomain(fuzzParams(xen, bridged, seed, plain(title), plain(network), plain(bridge), plain(mac), plain(hostname), plain(cmdline))))
		if err != nil {
			t.Fatal(err)
		}
		if got, exp := fuzzShape(t, doc), fuzzShape(t, ref); !reflect.DeepEqual(got, exp) {
			t.Fatalf("fields changed the document's structure:\n got %v\nwant %v\n%s", got, exp, doc)
		}
		var back domainXML
		if err := xml.Unmarshal([]byte(doc), &back); err != nil {
			t.Fatalf("the document does not read back: %v\n%s", err, doc)
		}
		if validXMLText(title) && strings.ReplaceAll(back.Title, "\r\n", "\n") != strings.ReplaceAll(strings.ReplaceAll(title, "\r\n", "\n"), "\r", "\n") {
			t.Fatalf("title %q read back as %q", title, back.Title)
		}
		if back.Name != want.Name || len(back.Devices.Disks) != len(want.Devices.Disks) || len(back.Devices.Interfaces) != 1 {
			t.Fatalf("read back %+v", back)
		}
	})
}

// fuzzShape is shape (xml_test.go), refusing comments too.
func fuzzShape(t *testing.T, doc string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("generated XML does not parse: %v\n%s", err, doc)
		}
		switch tok.(type) {
		case xml.Comment, xml.ProcInst, xml.Directive:
			t.Fatalf("%T in generated XML:\n%s", tok, doc)
		}
	}
	return shape(t, doc)
}
