package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// guestNet is what the test guest printed about its network: its address
// (without the prefix length) and how it got it ("dhcp" or "cmdline").
func guestNet(t *testing.T, consoleLog string) (ip, via string) {
	t.Helper()
	re := regexp.MustCompile(`FLOTILLA-GUEST-NET ip=([0-9.]+)/[0-9]+ via=(\w+)`)
	testenv.Eventually(t, 90*time.Second, "the guest to configure its network ("+consoleLog+")", func() bool {
		b, err := os.ReadFile(consoleLog)
		if m := re.FindStringSubmatch(string(b)); err == nil && m != nil {
			ip, via = m[1], m[2]
			return true
		}
		return false
	})
	return ip, via
}

// httpGet fetches a guest's page from this machine.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), err
}

// waitPage waits until url answers with a page containing want.
func waitPage(t *testing.T, url, want string) string {
	t.Helper()
	var page string
	var err error
	testenv.Eventually(t, 60*time.Second, "GET "+url+" to show "+want, func() bool {
		page, err = httpGet(url)
		return err == nil && strings.Contains(page, want)
	})
	return page
}

// lookup resolves name with the DNS server at server (port 53) only.
func lookup(server, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", net.JoinHostPort(server, "53"))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.LookupHost(ctx, name)
}

// createOn creates a guest with NICs (each map: network, and ipv4Address
// for a static one) and returns its id and instance record.
func (e *env) createOn(name string, nics ...map[string]any) (string, map[string]any) {
	e.t.Helper()
	op := e.do("CreateInstance", map[string]any{"name": name, "requestId": "create-" + name,
		"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}, "interfaces": nics})
	e.mustSucceed(op)
	id := testenv.Str(op, "instanceId")
	e.t.Cleanup(func() {
		_, _ = virsh(e.t, "destroy", "flotilla-"+id)
		_, _ = virsh(e.t, "undefine", "--managed-save", "flotilla-"+id)
	})
	return id, e.instance(id)
}

// nic is an instance record's first interface.
func nic(inst map[string]any) map[string]any {
	list, _ := inst["interfaces"].([]any)
	if len(list) == 0 {
		return nil
	}
	m, _ := list[0].(map[string]any)
	return m
}

// TestNATNetworkOnRealLibvirt: guests on a NAT network get the
// coordinator's addresses from the network's DHCP server, this machine
// reaches each by address and by DNS name (NAME.NETWORK, served on the
// gateway), a guest reaches another, a static address is honoured and a
// taken or out-of-range one is refused before any domain exists; and the
// network and its reservations survive an agent restart and a libvirtd
// restart, with resync putting back a reservation removed behind the
// agent's back. The network goes when its last guest does.
func TestNATNetworkOnRealLibvirt(t *testing.T) {
	testenv.LockLibvirt(t, true) // restarts the shared libvirtd
	e := newEnv(t, nil, nil)
	const netName, libvirtNet = "e2enat", "flotilla-e2enat"
	t.Cleanup(func() {
		_, _ = virsh(t, "net-destroy", libvirtNet)
		_, _ = virsh(t, "net-undefine", libvirtNet)
	})
	n := e.g.MustCall("flotilla.v1.NetworkService/CreateNetwork", map[string]any{"name": netName, "cidr": "198.19.10.0/24", "mode": "NETWORK_MODE_NAT"})
	if testenv.Str(n, "gateway") != "198.19.10.1" || testenv.Str(n, "addressesTotal") != "253" {
		t.Fatalf("network: %v", n)
	}

	web1, inst1 := e.createOn("web1", map[string]any{"network": netName})
	web2, inst2 := e.createOn("web2", map[string]any{"network": netName, "ipv4Address": "198.19.10.50"})
	ip1, ip2 := testenv.Str(nic(inst1), "ipv4Address"), testenv.Str(nic(inst2), "ipv4Address")
	if ip1 != "198.19.10.2" || ip2 != "198.19.10.50" || testenv.Str(nic(inst1), "dnsName") != "web1."+netName ||
		testenv.Str(nic(inst1), "prefixLength") != "24" || testenv.Str(nic(inst1), "macAddress") == "" {
		t.Fatalf("interfaces: %v / %v", nic(inst1), nic(inst2))
	}
	// The guests got those addresses by DHCP, from the network's own server.
	for id, want := range map[string]string{web1: ip1, web2: ip2} {
		if got, via := guestNet(t, filepath.Join(e.agent.RunDir, id+".console.log")); got != want || via != "dhcp" {
			t.Fatalf("guest %s configured %s by %s, want %s by dhcp", id, got, via, want)
		}
	}
	// Seed 002: RightScale shows the private address and DNS name.
	rs := e.g.MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": web1, "vocabularies": []string{"VOCABULARY_RIGHTSCALE"}})
	if f := testenv.Str(rs, "views"); !strings.Contains(f, `"private_ip_addresses":"`+ip1+`"`) || !strings.Contains(f, `"private_dns_names":"web1.`+netName+`"`) {
		t.Fatalf("RightScale's view: %s", f)
	}
	// This machine reaches each by its address and by its DNS name.
	waitPage(t, "http://"+ip1+"/", "hostname=web1 instance="+web1)
	addrs, err := lookup("198.19.10.1", "web2."+netName)
	if err != nil || len(addrs) != 1 || addrs[0] != ip2 {
		t.Fatalf("web2.%s resolves to %v, %v; want %s", netName, addrs, err, ip2)
	}
	waitPage(t, "http://"+addrs[0]+"/", "hostname=web2 instance="+web2)
	// One guest reaches the other.
	waitPage(t, "http://"+ip1+"/cgi-bin/get?"+ip2, "hostname=web2")

	// Bad addresses: refused with the precise code, nothing created.
	before := domainCount(t)
	for _, c := range []struct {
		ip, code string
	}{
		{"198.19.10.50", "FailedPrecondition"}, // taken by web2
		{"198.19.11.7", "InvalidArgument"},     // outside the network
		{"198.19.10.1", "InvalidArgument"},     // the gateway
		{"198.19.10.255", "InvalidArgument"},   // broadcast
	} {
		_, err := e.g.Call("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": "bad",
			"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}, "interfaces": []any{map[string]any{"network": netName, "ipv4Address": c.ip}}})
		if err == nil || !strings.Contains(err.Error(), c.code) {
			t.Errorf("create with %s: %v, want %s", c.ip, err, c.code)
		}
	}
	if _, err := e.g.Call("flotilla.v1.NetworkService/DeleteNetwork", map[string]any{"name": netName}); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Errorf("deleting the network in use: %v", err)
	}
	if got := domainCount(t); got != before {
		t.Fatalf("refused creates left domains: %d, before %d", got, before)
	}

	// The reservations, as libvirt has them.
	reserved := func() bool {
		out, err := virsh(t, "net-dumpxml", libvirtNet)
		return err == nil && strings.Contains(out, "ip='"+ip1+"'") && strings.Contains(out, "ip='"+ip2+"'")
	}
	if !reserved() {
		out, _ := virsh(t, "net-dumpxml", libvirtNet)
		t.Fatalf("reservations missing:\n%s", out)
	}
	// An agent restart keeps everything; one removed behind its back is put back.
	mac2 := testenv.Str(nic(inst2), "macAddress")
	if out, err := virsh(t, "net-update", libvirtNet, "delete", "ip-dhcp-host",
		fmt.Sprintf("<host mac='%s' ip='%s'/>", mac2, ip2), "--live", "--config"); err != nil {
		t.Fatalf("removing a reservation: %v %s", err, out)
	}
	e.agent.Restart()
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)
	testenv.Eventually(t, 30*time.Second, "resync to put the reservation back", reserved)
	waitPage(t, "http://"+ip1+"/cgi-bin/get?"+ip2, "hostname=web2")

	// A libvirtd restart: the network is persistent and autostarted.
	restartLibvirtd(t, "flotilla-"+web1, "flotilla-"+web2)
	testenv.Eventually(t, 30*time.Second, "the reservations after a libvirtd restart", reserved)
	waitPage(t, "http://"+ip1+"/cgi-bin/get?"+ip2, "hostname=web2")
	if addrs, err := lookup("198.19.10.1", "web1."+netName); err != nil || len(addrs) != 1 || addrs[0] != ip1 {
		t.Fatalf("after the libvirtd restart web1.%s resolves to %v, %v", netName, addrs, err)
	}

	// The last guest gone, the network goes from the host; its addresses are
	// free, and the network can be deleted.
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": web1}))
	if out, err := virsh(t, "net-list", "--all", "--name"); err != nil || !strings.Contains(out, libvirtNet) {
		t.Fatalf("the network went while a guest was still on it: %v %s", err, out)
	}
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": web2}))
	testenv.Eventually(t, 30*time.Second, "the network to leave the host", func() bool {
		out, err := virsh(t, "net-list", "--all", "--name")
		return err == nil && !strings.Contains(out, libvirtNet)
	})
	n = e.g.MustCall("flotilla.v1.NetworkService/GetNetwork", map[string]any{"name": netName})
	if testenv.Str(n, "addressesInUse") != "" && testenv.Str(n, "addressesInUse") != "0" {
		t.Fatalf("addresses held after every guest was deleted: %v", n)
	}
	e.g.MustCall("flotilla.v1.NetworkService/DeleteNetwork", map[string]any{"name": netName})
}

// domainCount is how many domains the system libvirtd has.
func domainCount(t *testing.T) int {
	t.Helper()
	out, err := virsh(t, "list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(out))
}

// TestBridgeNetworkAcrossHostsOnRealLibvirt: on the test bed, guests on two
// hosts share a bridge network (each host's br0, one segment): each guest
// configures the address the coordinator gave it from its kernel command
// line (a bridge network has no DHCP server), this machine reaches both,
// and one reaches the other across hosts. A cold move and a resize keep
// the instance's address, and it is reachable afterwards.
func TestBridgeNetworkAcrossHostsOnRealLibvirt(t *testing.T) {
	e := newTestbedEnvWith(t, "--bridges=br0")
	e.g.MustCall("flotilla.v1.NetworkService/CreateNetwork", map[string]any{"name": "tbnet", "cidr": "198.18.78.0/24",
		"gateway": "198.18.78.1", "mode": "NETWORK_MODE_BRIDGE", "bridge": "br0"})
	create := func(name string) (string, string) {
		t.Helper()
		op := e.do("CreateInstance", map[string]any{"name": name, "spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"},
			"interfaces": []any{map[string]any{"network": "tbnet"}}})
		e.mustSucceed(op)
		id := testenv.Str(op, "instanceId")
		return id, testenv.Str(nic(e.instance(id)), "ipv4Address")
	}
	g1, ip1 := create("g1") // on tb-1, the only host yet
	dstAgent := e.startAgent(e.dst, "--bridges=br0")
	g2, ip2 := create("g2")
	if h := testenv.Str(e.instance(g2), "hostId"); h != e.dst.Name {
		e.mustSucceed(e.do("MoveInstance", map[string]any{"id": g2, "targetHostId": e.dst.Name, "gracefulTimeout": "30s"}))
	}
	if ip1 != "198.18.78.2" || ip2 != "198.18.78.3" {
		t.Fatalf("addresses %s and %s", ip1, ip2)
	}
	for _, g := range []struct{ id, ip, runDir string }{{g1, ip1, e.agent.RunDir}, {g2, ip2, dstAgent.RunDir}} {
		if got, via := guestNet(t, filepath.Join(g.runDir, g.id+".console.log")); got != g.ip || via != "cmdline" {
			t.Fatalf("guest %s configured %s by %s, want %s by cmdline", g.id, got, via, g.ip)
		}
	}
	waitPage(t, "http://"+ip1+"/", "hostname=g1 instance="+g1)
	waitPage(t, "http://"+ip2+"/", "hostname=g2 instance="+g2)
	waitPage(t, "http://"+ip1+"/cgi-bin/get?"+ip2, "hostname=g2") // tb-1 to tb-2
	waitPage(t, "http://"+ip2+"/cgi-bin/get?"+ip1, "hostname=g1") // and back

	// g1 moves to tb-2: same address, reachable there.
	e.waitGuestReady(g1, 1)
	e.mustSucceed(e.do("MoveInstance", map[string]any{"id": g1, "targetHostId": e.dst.Name, "gracefulTimeout": "30s"}))
	inst := e.instance(g1)
	if testenv.Str(inst, "hostId") != e.dst.Name || testenv.Str(nic(inst), "ipv4Address") != ip1 {
		t.Fatalf("after the move: %v", inst)
	}
	waitPage(t, "http://"+ip1+"/", "hostname=g1 instance="+g1)
	waitPage(t, "http://"+ip2+"/cgi-bin/get?"+ip1, "hostname=g1")

	// g2 is resized to tb-1: same address, reachable at its new shape.
	readyIn(t, dstAgent.RunDir, g2, 1)
	e.mustSucceed(e.do("ResizeInstance", map[string]any{"id": g2, "vcpus": 2, "targetHostId": e.src.Name, "gracefulTimeout": "30s"}))
	e.mustSucceed(e.do("ConfirmResize", map[string]any{"id": g2}))
	inst = e.instance(g2)
	if testenv.Str(inst, "hostId") != e.src.Name || testenv.Str(inst, "spec", "vcpus") != "2" || testenv.Str(nic(inst), "ipv4Address") != ip2 {
		t.Fatalf("after the resize: %v", inst)
	}
	waitPage(t, "http://"+ip2+"/", "hostname=g2 instance="+g2)
	waitPage(t, "http://"+ip1+"/cgi-bin/get?"+ip2, "hostname=g2")
}

// TestNetworkPreflightOnRealLibvirt: seed 000's "IP address validity
// check" on the host. The agent serves bridge fltpf0, which then goes away
// behind its back: a create on that bridge's network fails at pre-flight
// with NETWORK_UNAVAILABLE before any domain exists, and the instance
// shows the failure rather than hanging in a transitional state.
func TestNetworkPreflightOnRealLibvirt(t *testing.T) {
	const bridge = "fltpf0"
	ip := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := testenv.Run(ctx, "ip", args...); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	ip("link", "add", bridge, "type", "bridge")
	t.Cleanup(func() { _, _ = testenv.Run(context.Background(), "ip", "link", "del", bridge) })
	e := newEnv(t, nil, []string{"--bridges=" + bridge})
	h := e.g.MustCall("flotilla.v1.HostService/GetHost", map[string]any{"id": e.host})
	if !strings.Contains(testenv.Str(h, "bridges"), bridge) || testenv.Str(h, "managedNetworks") != "true" {
		t.Fatalf("host: %v", h)
	}
	e.g.MustCall("flotilla.v1.NetworkService/CreateNetwork", map[string]any{"name": "pf", "cidr": "198.19.20.0/24", "mode": "NETWORK_MODE_BRIDGE", "bridge": bridge})
	ip("link", "del", bridge)
	before := domainCount(t)
	op := e.do("CreateInstance", map[string]any{"name": "pf1", "spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"},
		"interfaces": []any{map[string]any{"network": "pf"}}})
	id := testenv.Str(op, "instanceId")
	t.Cleanup(func() { _, _ = virsh(t, "undefine", "flotilla-"+id) })
	if testenv.Str(op, "state") != "OPERATION_STATE_FAILED" || testenv.Str(op, "error", "code") != "NETWORK_UNAVAILABLE" ||
		!strings.Contains(testenv.Str(op, "error", "message"), bridge) {
		t.Fatalf("create on a vanished bridge: %v", op)
	}
	if got := domainCount(t); got != before {
		t.Fatalf("a domain was defined: %d, before %d", got, before)
	}
	if s := e.status(id); s != "STATUS_ERROR" {
		t.Fatalf("instance after the failed pre-flight: %s", s)
	}
}
