package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// hostCommands are the subcommands of "host".
func hostCommands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		leaf(c, "list", "List the hosts", 0, defineNone, runHostList),
		leaf(c, "get", "Show a host", 1, defineNone, runHostGet),
		leaf(c, "cordon", "Place no new instances on a host", 1, defineNone, hostCall((*cli).cordon)),
		leaf(c, "uncordon", "Place instances on a host again", 1, defineNone, hostCall((*cli).uncordon)),
		leaf(c, "drain", "Cordon a host and stop or move its instances", 1, defineDrain, runHostDrain),
		leaf(c, "remove", "Forget a host whose agent is gone and that has nothing on it", 1, defineNone, runHostRemove),
	}
}

func runHostList(ctx context.Context, c *cli, _ []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.hosts.ListHosts(cctx, &flotillav1.ListHostsRequest{})
	if err != nil {
		return err
	}
	return printHosts(c.stdout, c.out.asList(), resp.GetHosts())
}

func runHostGet(ctx context.Context, c *cli, pos []string) error {
	return hostCall(func(c *cli, ctx context.Context, id string) (*flotillav1.Host, error) {
		return c.hosts.GetHost(ctx, &flotillav1.GetHostRequest{Id: id})
	})(ctx, c, pos)
}

func (c *cli) cordon(ctx context.Context, id string) (*flotillav1.Host, error) {
	return c.hosts.CordonHost(ctx, &flotillav1.CordonHostRequest{Id: id})
}

func (c *cli) uncordon(ctx context.Context, id string) (*flotillav1.Host, error) {
	return c.hosts.UncordonHost(ctx, &flotillav1.UncordonHostRequest{Id: id})
}

// hostCall is a command that makes one call on a host and prints it.
func hostCall(call func(c *cli, ctx context.Context, id string) (*flotillav1.Host, error)) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, pos []string) error {
		cctx, done, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer done()
		h, err := call(c, cctx, pos[0])
		if err != nil {
			return err
		}
		return printHosts(c.stdout, c.out, []*flotillav1.Host{h})
	}
}

// parseDrain builds a DrainHost request.
func parseDrain(name string, args []string) (*flotillav1.DrainHostRequest, error) {
	return parseWith(name, args, 1, defineDrain)
}

func defineDrain(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.DrainHostRequest, error) {
	policy := fs.String("policy", "stop", "stop: stop every instance where it is; move: move each to another host (stopped if none has room)")
	graceful := fs.Duration("graceful", 10*time.Minute, "how long each guest gets to power off before it is destroyed")
	return func(pos []string) (*flotillav1.DrainHostRequest, error) {
		p, ok := parseFlagWord[flotillav1.DrainPolicy](strings.ToLower(*policy))
		if !ok {
			return nil, &usageError{name, fmt.Sprintf("--policy must be stop or move, not %q", *policy)}
		}
		if *graceful <= 0 {
			return nil, &usageError{name, "--graceful must be positive"}
		}
		return &flotillav1.DrainHostRequest{Id: pos[0], Policy: p, GracefulTimeout: durationpb.New(*graceful)}, nil
	}
}

func runHostDrain(ctx context.Context, c *cli, req *flotillav1.DrainHostRequest) error {
	return hostCall(func(c *cli, ctx context.Context, _ string) (*flotillav1.Host, error) {
		return c.hosts.DrainHost(ctx, req)
	})(ctx, c, []string{req.GetId()})
}

// runHostRemove forgets a host whose agent is gone and that has nothing on it.
func runHostRemove(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.hosts.RemoveHost(cctx, &flotillav1.RemoveHostRequest{Id: pos[0]}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "removed host %s\n", escape(pos[0]))
	return err
}
