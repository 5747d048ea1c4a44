package api

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// netWrites is newWrites with a cluster at log version 3, h1 making
// networks and h2 also having bridge br0.
func netWrites(t *testing.T) (*writes, *networks) {
	w := newWrites(t, nil)
	w.apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.LogVersion3})
	for _, h := range []state.Host{
		{ID: "h1", Kind: "fake", PeerAddr: "127.0.0.1:7001", ManagedNetworks: true},
		{ID: "h2", Kind: "fake", PeerAddr: "127.0.0.1:7002", ManagedNetworks: true, Bridges: []string{"br0"}},
	} {
		h.Capacity = state.Resources{VCPUs: 8, MemoryMiB: 1 << 16, DiskGiB: 1 << 10}
		w.apply(fsm.TypeRegisterHost, fsm.RegisterHost{Host: h})
	}
	return w, &networks{core: w.inst.core}
}

func TestNetworkService(t *testing.T) {
	w, n := netWrites(t)
	ctx := context.Background()
	lan, err := n.CreateNetwork(ctx, &pb.CreateNetworkRequest{Name: "lan", Cidr: "10.20.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_NAT})
	if err != nil || lan.Gateway != "10.20.0.1" || lan.AddressesTotal != 253 || strings.Join(lan.Hosts, ",") != "h1,h2" {
		t.Fatalf("lan: %v, %v", lan, err)
	}
	dc, err := n.CreateNetwork(ctx, &pb.CreateNetworkRequest{Name: "dc", Cidr: "192.168.50.0/24", Gateway: "192.168.50.254",
		Mode: pb.NetworkMode_NETWORK_MODE_BRIDGE, Bridge: "br0"})
	if err != nil || strings.Join(dc.Hosts, ",") != "h2" {
		t.Fatalf("dc: %v, %v", dc, err)
	}
	rev := w.store.Revision()
	for _, c := range []struct {
		what  string
		req   *pb.CreateNetworkRequest
		code  codes.Code
		field string
	}{
		{"bad name", &pb.CreateNetworkRequest{Name: "Lan", Cidr: "10.9.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_NAT}, codes.InvalidArgument, "name"},
		{"malformed cidr", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.0/33", Mode: pb.NetworkMode_NETWORK_MODE_NAT}, codes.InvalidArgument, "cidr"},
		{"host bits", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.1/24", Mode: pb.NetworkMode_NETWORK_MODE_NAT}, codes.InvalidArgument, "cidr"},
		{"ipv6", &pb.CreateNetworkRequest{Name: "x", Cidr: "fd00::/64", Mode: pb.NetworkMode_NETWORK_MODE_NAT}, codes.InvalidArgument, "cidr"},
		{"gateway outside", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.0/24", Gateway: "10.8.0.1", Mode: pb.NetworkMode_NETWORK_MODE_NAT}, codes.InvalidArgument, "gateway"},
		{"no mode", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.0/24"}, codes.InvalidArgument, "mode"},
		{"bridge without a bridge", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_BRIDGE}, codes.InvalidArgument, "bridge"},
		{"bridge name with a slash", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_BRIDGE, Bridge: "../x"}, codes.InvalidArgument, "bridge"},
		{"nat with a bridge", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_NAT, Bridge: "br0"}, codes.InvalidArgument, "bridge"},
		{"taken name", &pb.CreateNetworkRequest{Name: "lan", Cidr: "10.9.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_NAT}, codes.AlreadyExists, ""},
		{"overlap", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.20.0.128/25", Mode: pb.NetworkMode_NETWORK_MODE_NAT}, codes.FailedPrecondition, ""},
		{"bridge taken", &pb.CreateNetworkRequest{Name: "x", Cidr: "10.9.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_BRIDGE, Bridge: "br0"}, codes.FailedPrecondition, ""},
	} {
		_, err := n.CreateNetwork(ctx, c.req)
		refused(t, c.what, err, c.code, c.field)
	}
	if w.store.Revision() != rev {
		t.Fatal("a refused network changed the state")
	}

	spec := &pb.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "img"}
	create := func(name string, nics ...*pb.NetworkInterfaceRequest) (*pb.Operation, error) {
		return w.inst.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: name, Spec: spec, Interfaces: nics})
	}
	op, err := create("web", &pb.NetworkInterfaceRequest{Network: "lan"}, &pb.NetworkInterfaceRequest{Network: "dc", Ipv4Address: "192.168.50.10"})
	if err != nil {
		t.Fatal(err)
	}
	w.done(op.Id)
	web, err := w.inst.GetInstance(ctx, &pb.GetInstanceRequest{Id: op.InstanceId, Vocabularies: []pb.Vocabulary{pb.Vocabulary_VOCABULARY_RIGHTSCALE}})
	if err != nil {
		t.Fatal(err)
	}
	if web.HostId != "h2" || len(web.Interfaces) != 2 {
		t.Fatalf("web: on %s with %v", web.HostId, web.Interfaces)
	}
	if a, b := web.Interfaces[0], web.Interfaces[1]; a.Ipv4Address != "10.20.0.2" || a.PrefixLength != 24 || a.Gateway != "10.20.0.1" || a.DnsName != "web.lan" ||
		b.Ipv4Address != "192.168.50.10" || b.Gateway != "192.168.50.254" || b.DnsName != "web.dc" || a.MacAddress == b.MacAddress {
		t.Fatalf("interfaces %v", web.Interfaces)
	}
	if f := web.Views[0].Fields; f["private_ip_addresses"] != "10.20.0.2,192.168.50.10" || f["private_dns_names"] != "web.lan,web.dc" {
		t.Fatalf("RightScale fields %v", f)
	}

	rev = w.store.Revision()
	for _, c := range []struct {
		what  string
		req   *pb.CreateInstanceRequest
		code  codes.Code
		field string
	}{
		{"unknown network", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: []*pb.NetworkInterfaceRequest{{Network: "nope"}}}, codes.NotFound, ""},
		{"address taken", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: []*pb.NetworkInterfaceRequest{{Network: "dc", Ipv4Address: "192.168.50.10"}}}, codes.FailedPrecondition, ""},
		{"address outside", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: []*pb.NetworkInterfaceRequest{{Network: "lan", Ipv4Address: "10.21.0.5"}}}, codes.InvalidArgument, "interfaces[0].ipv4_address"},
		{"the gateway", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: []*pb.NetworkInterfaceRequest{{Network: "lan", Ipv4Address: "10.20.0.1"}}}, codes.InvalidArgument, "interfaces[0].ipv4_address"},
		{"broadcast", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: []*pb.NetworkInterfaceRequest{{Network: "lan", Ipv4Address: "10.20.0.255"}}}, codes.InvalidArgument, "interfaces[0].ipv4_address"},
		{"not an address", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: []*pb.NetworkInterfaceRequest{{Network: "lan", Ipv4Address: "10.20.0.x"}}}, codes.InvalidArgument, "interfaces[0].ipv4_address"},
		{"bad network name", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: []*pb.NetworkInterfaceRequest{{Network: "../etc"}}}, codes.InvalidArgument, "interfaces[0].network"},
		{"nine NICs", &pb.CreateInstanceRequest{Name: "a", Spec: spec, Interfaces: make9()}, codes.InvalidArgument, "interfaces"},
		{"user data too big", &pb.CreateInstanceRequest{Name: "a", Spec: spec, UserData: strings.Repeat("x", 64<<10+1)}, codes.InvalidArgument, "user_data"},
		{"a key of two lines", &pb.CreateInstanceRequest{Name: "a", Spec: spec, SshAuthorizedKeys: []string{"ssh-ed25519 AAAA\nssh-rsa BBBB"}}, codes.InvalidArgument, "ssh_authorized_keys[0]"},
		{"an empty key", &pb.CreateInstanceRequest{Name: "a", Spec: spec, SshAuthorizedKeys: []string{" "}}, codes.InvalidArgument, "ssh_authorized_keys[0]"},
	} {
		_, err := w.inst.CreateInstance(ctx, c.req)
		refused(t, c.what, err, c.code, c.field)
	}
	// A network no host serves.
	if _, err := n.CreateNetwork(ctx, &pb.CreateNetworkRequest{Name: "far", Cidr: "172.16.0.0/24", Mode: pb.NetworkMode_NETWORK_MODE_BRIDGE, Bridge: "br9"}); err != nil {
		t.Fatal(err)
	}
	rev = w.store.Revision()
	_, err = create("lost", &pb.NetworkInterfaceRequest{Network: "far"})
	refused(t, "a network no host serves", err, codes.FailedPrecondition, "")
	if w.store.Revision() != rev {
		t.Fatal("a refused create changed the state")
	}

	// In use: not deleted; once its instance is, it goes.
	_, err = n.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Name: "dc"})
	refused(t, "delete a network in use", err, codes.FailedPrecondition, "")
	if got, _ := n.GetNetwork(ctx, &pb.GetNetworkRequest{Name: "dc"}); got.AddressesInUse != 1 {
		t.Fatalf("dc: %v", got)
	}
	del, err := w.inst.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: web.Id})
	if err != nil {
		t.Fatal(err)
	}
	w.done(del.Id)
	if _, err := n.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Name: "dc"}); err != nil {
		t.Fatal(err)
	}
	_, err = n.GetNetwork(ctx, &pb.GetNetworkRequest{Name: "dc"})
	refused(t, "get a deleted network", err, codes.NotFound, "")
	list, _ := n.ListNetworks(ctx, &pb.ListNetworksRequest{})
	if len(list.Networks) != 2 || list.Networks[0].Name != "far" || list.Networks[1].Name != "lan" || list.Networks[1].AddressesInUse != 0 {
		t.Fatalf("networks %v", list.Networks)
	}
}

func make9() []*pb.NetworkInterfaceRequest {
	out := make([]*pb.NetworkInterfaceRequest, 9)
	for i := range out {
		out[i] = &pb.NetworkInterfaceRequest{Network: "lan"}
	}
	return out
}

// Before every server is upgraded (log version 3), NICs are refused.
func TestNetworksNeedLogVersion3(t *testing.T) {
	w := newWrites(t, nil)
	w.apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.LogVersion2})
	_, err := w.inst.CreateInstance(context.Background(), &pb.CreateInstanceRequest{Name: "a", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "img"},
		SshAuthorizedKeys: []string{"ssh-ed25519 AAAA a@b"}})
	refused(t, "SSH keys at log version 2", err, codes.FailedPrecondition, "")
}
