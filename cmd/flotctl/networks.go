package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"strings"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// parseNetworkCreate builds a CreateNetwork request; the server validates
// the values (INVALID_ARGUMENT), flotctl only their form.
func parseNetworkCreate(name string, args []string) (*flotillav1.CreateNetworkRequest, error) {
	return parseWith(name, args, 1, defineNetworkCreate)
}

// networkCommands are the subcommands of "network".
func networkCommands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		leaf(c, "create NAME", "Create a network", 1, defineNetworkCreate, runNetworkCreate),
		leaf(c, "list", "List the networks", 0, defineNone, runNetworkList),
		leaf(c, "get NAME", "Show a network", 1, defineNone, runNetworkGet),
		leaf(c, "delete NAME", "Delete a network no instance uses", 1, defineNone, runNetworkDelete),
	}
}

func defineNetworkCreate(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.CreateNetworkRequest, error) {
	cidr := fs.String("cidr", "", "the network's IPv4 prefix, e.g. 10.20.0.0/24 (required)")
	gateway := fs.String("gateway", "", "the gateway address (default: the first address)")
	mode := fs.String("mode", "nat", "nat: a network on each host, NATed out; isolated: the same without the route out; bridge: NICs on a host bridge")
	bridge := fs.String("bridge", "", "for --mode bridge: the host bridge NICs attach to")
	return func(pos []string) (*flotillav1.CreateNetworkRequest, error) {
		m, ok := parseFlagWord[flotillav1.NetworkMode](strings.ToLower(*mode))
		switch {
		case !ok:
			return nil, &usageError{name, fmt.Sprintf("--mode must be nat, isolated or bridge, not %q", *mode)}
		case *cidr == "":
			return nil, &usageError{name, "--cidr is required"}
		}
		return &flotillav1.CreateNetworkRequest{Name: pos[0], Cidr: *cidr, Gateway: *gateway, Mode: m, Bridge: *bridge}, nil
	}
}

func runNetworkCreate(ctx context.Context, c *cli, req *flotillav1.CreateNetworkRequest) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	n, err := c.networks.CreateNetwork(cctx, req)
	if err != nil {
		return err
	}
	return printNetworks(c.stdout, c.out, []*flotillav1.Network{n})
}

func runNetworkList(ctx context.Context, c *cli, _ []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.networks.ListNetworks(cctx, &flotillav1.ListNetworksRequest{})
	if err != nil {
		return err
	}
	return printNetworks(c.stdout, c.out.asList(), resp.GetNetworks())
}

func runNetworkGet(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	n, err := c.networks.GetNetwork(cctx, &flotillav1.GetNetworkRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	return printNetworks(c.stdout, c.out, []*flotillav1.Network{n})
}

func runNetworkDelete(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.networks.DeleteNetwork(cctx, &flotillav1.DeleteNetworkRequest{Name: pos[0]}); err != nil {
		return err
	}
	if c.out.document() {
		return writeJSONDoc(c.stdout, c.out, []byte(fmt.Sprintf(`{"deleted":%q}`, pos[0])))
	}
	_, err = fmt.Fprintf(c.stdout, "deleted network %s\n", escape(pos[0]))
	return err
}

func printNetworks(w io.Writer, f outFmt, nets []*flotillav1.Network) error {
	if f.document() {
		return writeDoc(w, f, nets)
	}
	rows := make([][]string, 0, len(nets))
	for _, n := range nets {
		bridge := n.GetBridge()
		if bridge == "" {
			bridge = "-"
		}
		rows = append(rows, []string{
			n.GetName(),
			strings.ToLower(enumName(n.GetMode(), "NETWORK_MODE_")),
			n.GetCidr(),
			n.GetGateway(),
			bridge,
			fmt.Sprintf("%d/%d", n.GetAddressesInUse(), n.GetAddressesTotal()),
			strings.Join(n.GetHosts(), ","),
		})
	}
	return writeTable(w, []string{"NAME", "MODE", "CIDR", "GATEWAY", "BRIDGE", "ADDRESSES", "HOSTS"}, rows)
}

// addresses is an instance's NICs for a table: "10.0.0.5 (web.lan)", comma-separated.
func addresses(in *flotillav1.Instance) string {
	var out []string
	for _, n := range in.GetInterfaces() {
		out = append(out, fmt.Sprintf("%s (%s)", n.GetIpv4Address(), n.GetDnsName()))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}
