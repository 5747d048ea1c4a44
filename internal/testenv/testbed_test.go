package testenv

import "testing"

// TestParseTestbedStatus reads what scripts/testbed.sh status prints, with
// the script's log lines mixed in.
func TestParseTestbedStatus(t *testing.T) {
	out := `testbed: already up with 2 hosts
bridge name=flotilla-tb0 addr=198.18.77.1 net=198.18.77.0/24
host id=1 state=ok ns=flotilla-tb-1 addr=198.18.77.11 socket=/x/host-1/sock/libvirt-sock dir=/x/host-1 libvirtd=101 virtlogd=100
host id=2 state=ok ns=flotilla-tb-2 addr=198.18.77.12 socket=/x/host-2/sock/libvirt-sock dir=/x/host-2 libvirtd=201 virtlogd=200
`
	tb, err := parseTestbedStatus(out)
	if err != nil {
		t.Fatal(err)
	}
	want := TestbedHost{Index: 2, Name: "tb-2", Addr: "198.18.77.12", Netns: "flotilla-tb-2", Socket: "/x/host-2/sock/libvirt-sock", Dir: "/x/host-2", LibvirtdPID: 201}
	if tb.BridgeAddr != "198.18.77.1" || len(tb.Hosts) != 2 || tb.Hosts[1] != want {
		t.Fatalf("parsed %+v", tb)
	}
	if got := tb.Hosts[0].Path("/var/lib/flotilla/disks/i-1.qcow2"); got != "/x/host-1/flotilla/disks/i-1.qcow2" {
		t.Fatalf("Path: %s", got)
	}
	for _, bad := range []string{"down\n", "bridge name=flotilla-tb0 addr=198.18.77.1\nhost id=1 state=broken libvirtd=\n"} {
		if _, err := parseTestbedStatus(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}
