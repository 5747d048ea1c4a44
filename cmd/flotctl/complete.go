package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// lister returns the ids a command's argument can be, each with a
// description ("i-1\tweb") for shells that show them.
type lister func(ctx context.Context, c *cli) ([]string, error)

// completingIDs makes the commands among cmds that take one ID or NAME
// complete it from list, asking the coordinators.
func completingIDs(c *cli, list lister, cmds ...*cobra.Command) []*cobra.Command {
	for _, cmd := range cmds {
		if strings.HasSuffix(cmd.Use, " ID") || strings.HasSuffix(cmd.Use, " NAME") {
			cmd.ValidArgsFunction = completeIDs(c, list)
		}
	}
	return cmds
}

func completeIDs(c *cli, list lister) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if err := c.settle(cmd); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		cctx, done, err := c.open(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		defer done()
		ids, err := list(cctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}

func instanceIDs(ctx context.Context, c *cli) ([]string, error) {
	resp, err := c.instances.ListInstances(ctx, &flotillav1.ListInstancesRequest{})
	var out []string
	for _, in := range resp.GetInstances() {
		out = append(out, escape(in.GetId())+"\t"+escape(in.GetName()))
	}
	return out, err
}

func operationIDs(ctx context.Context, c *cli) ([]string, error) {
	resp, err := c.operations.ListOperations(ctx, &flotillav1.ListOperationsRequest{})
	var out []string
	for _, op := range resp.GetOperations() {
		out = append(out, escape(op.GetId())+"\t"+enumName(op.GetKind(), "OPERATION_KIND_")+" "+escape(op.GetInstanceId()))
	}
	return out, err
}

func hostIDs(ctx context.Context, c *cli) ([]string, error) {
	resp, err := c.hosts.ListHosts(ctx, &flotillav1.ListHostsRequest{})
	var out []string
	for _, h := range resp.GetHosts() {
		out = append(out, escape(h.GetId())+"\t"+enumName(h.GetStatus(), "HOST_STATUS_"))
	}
	return out, err
}

func networkNames(ctx context.Context, c *cli) ([]string, error) {
	resp, err := c.networks.ListNetworks(ctx, &flotillav1.ListNetworksRequest{})
	var out []string
	for _, n := range resp.GetNetworks() {
		out = append(out, escape(n.GetName())+"\t"+escape(n.GetCidr()))
	}
	return out, err
}
