package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func runHostList(ctx context.Context, c *cli, name string, args []string) error {
	if _, err := parseArgs(newFlagSet(name), name, args, 0); err != nil {
		return err
	}
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.hosts.ListHosts(cctx, &flotillav1.ListHostsRequest{})
	if err != nil {
		return err
	}
	return printHosts(c.stdout, c.output, resp.GetHosts())
}

func runHostGet(ctx context.Context, c *cli, name string, args []string) error {
	pos, err := parseArgs(newFlagSet(name), name, args, 1)
	if err != nil {
		return err
	}
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	h, err := c.hosts.GetHost(cctx, &flotillav1.GetHostRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	return printHosts(c.stdout, c.output, []*flotillav1.Host{h})
}

// runHostCordon cordons or uncordons a host and prints it.
func runHostCordon(ctx context.Context, c *cli, name string, args []string) error {
	pos, err := parseArgs(newFlagSet(name), name, args, 1)
	if err != nil {
		return err
	}
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	var h *flotillav1.Host
	if name == "host uncordon" {
		h, err = c.hosts.UncordonHost(cctx, &flotillav1.UncordonHostRequest{Id: pos[0]})
	} else {
		h, err = c.hosts.CordonHost(cctx, &flotillav1.CordonHostRequest{Id: pos[0]})
	}
	if err != nil {
		return err
	}
	return printHosts(c.stdout, c.output, []*flotillav1.Host{h})
}

// parseDrain builds a DrainHost request.
func parseDrain(name string, args []string) (*flotillav1.DrainHostRequest, error) {
	fs := newFlagSet(name)
	policy := fs.String("policy", "stop", "stop: stop every instance where it is; move: move each to another host (stopped if none has room)")
	graceful := fs.Duration("graceful", 10*time.Minute, "how long each guest gets to power off before it is destroyed")
	pos, err := parseArgs(fs, name, args, 1)
	if err != nil {
		return nil, err
	}
	usage := usageOf(name)
	p, ok := parseFlagWord[flotillav1.DrainPolicy](strings.ToLower(*policy))
	if !ok {
		return nil, &usageError{usage, fmt.Sprintf("--policy must be stop or move, not %q", *policy)}
	}
	if *graceful <= 0 {
		return nil, &usageError{usage, "--graceful must be positive"}
	}
	return &flotillav1.DrainHostRequest{Id: pos[0], Policy: p, GracefulTimeout: durationpb.New(*graceful)}, nil
}

func runHostDrain(ctx context.Context, c *cli, name string, args []string) error {
	req, err := parseDrain(name, args)
	if err != nil {
		return err
	}
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	h, err := c.hosts.DrainHost(cctx, req)
	if err != nil {
		return err
	}
	return printHosts(c.stdout, c.output, []*flotillav1.Host{h})
}

// runHostRemove forgets a host whose agent is gone and that has nothing on it.
func runHostRemove(ctx context.Context, c *cli, name string, args []string) error {
	pos, err := parseArgs(newFlagSet(name), name, args, 1)
	if err != nil {
		return err
	}
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.hosts.RemoveHost(cctx, &flotillav1.RemoveHostRequest{Id: pos[0]}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "removed host %s\n", safe(pos[0]))
	return err
}
