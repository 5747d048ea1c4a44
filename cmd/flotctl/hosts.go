package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
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

// drainCmd is a parsed host drain: the request and --wait.
type drainCmd struct {
	req  *flotillav1.DrainHostRequest
	wait waitFlags
}

// parseDrain builds a DrainHost request.
func parseDrain(name string, args []string) (*flotillav1.DrainHostRequest, error) {
	d, err := parseWith(name, args, 1, defineDrain)
	return d.req, err
}

func defineDrain(fs *pflag.FlagSet, name string) func([]string) (drainCmd, error) {
	policy := fs.String("policy", "stop", "stop: stop every instance where it is; move: move each to another host (stopped if none has room)")
	graceful := fs.Duration("graceful", 10*time.Minute, "how long each guest gets to power off before it is destroyed")
	var w waitFlags
	fs.BoolVar(&w.on, "wait", false, "wait until the drain is done (no instance left running or being acted on there), showing its progress, then show the host")
	fs.DurationVar(&w.timeout, "wait-timeout", 0, "with --wait: give up waiting after this long, exit 5 (0: wait until the drain is done)")
	return func(pos []string) (drainCmd, error) {
		p, ok := parseFlagWord[flotillav1.DrainPolicy](strings.ToLower(*policy))
		if !ok {
			return drainCmd{}, &usageError{name, fmt.Sprintf("--policy must be stop or move, not %q", *policy)}
		}
		if *graceful <= 0 {
			return drainCmd{}, &usageError{name, "--graceful must be positive"}
		}
		if w.timeout < 0 {
			return drainCmd{}, &usageError{name, "--wait-timeout must not be negative"}
		}
		return drainCmd{req: &flotillav1.DrainHostRequest{Id: pos[0], Policy: p, GracefulTimeout: durationpb.New(*graceful)}, wait: w}, nil
	}
}

func runHostDrain(ctx context.Context, c *cli, d drainCmd) error {
	if !d.wait.on {
		return hostCall(func(c *cli, ctx context.Context, _ string) (*flotillav1.Host, error) {
			return c.hosts.DrainHost(ctx, d.req)
		})(ctx, c, []string{d.req.GetId()})
	}
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	id := d.req.GetId()
	cctx, cancel := c.call(ctx)
	h, err := c.hosts.DrainHost(cctx, d.req)
	cancel()
	if err != nil {
		return err
	}
	// Said at once, as for an operation's --wait: an interrupted wait
	// leaves something to go on with.
	note := c.stdout
	if c.out.document() {
		note = c.stderr
	}
	fmt.Fprintf(note, "host %s: draining, policy %s (Ctrl-C stops waiting, not the drain)\n",
		escape(id), strings.ToLower(enumName(d.req.GetPolicy(), "DRAIN_POLICY_")))
	var deadline time.Time
	if d.wait.timeout > 0 {
		deadline = time.Now().Add(d.wait.timeout)
	}
	p := c.newProgress()
	h, err = c.waitDrain(ctx, h, deadline, p.showLine)
	p.end()
	switch {
	case err != nil && ctx.Err() != nil:
		return &exitError{msg: fmt.Sprintf("stopped waiting; the drain of host %s goes on (see: flotctl host get %s)", id, id)}
	case err != nil:
		return err
	}
	return printHosts(c.stdout, c.out, []*flotillav1.Host{h})
}

// drainState is how far a drain has got: the instances still placed on
// the host, and those of them an operation (the drain's stop or move, or
// any other) still acts on.
type drainState struct {
	left, busy int
	next       string // an instance still busy, to name in the progress line
}

func (s drainState) String() string {
	out := fmt.Sprintf("%d instance(s) on the host, %d being stopped or moved", s.left, s.busy)
	if s.next != "" {
		out += " (e.g. " + escape(s.next) + ")"
	}
	return out
}

// waitDrain polls the host and its instances until the drain is done:
// the host no longer DRAINING (nothing runs there) and no operation acting
// on an instance still placed there. A host that goes DOWN or DISCONNECTED
// ends the wait with an error: nothing moves until its agent is back.
func (c *cli) waitDrain(ctx context.Context, h *flotillav1.Host, deadline time.Time, show func(string)) (*flotillav1.Host, error) {
	id := h.GetId()
	for {
		st, err := c.drainState(ctx, id)
		if err != nil {
			return h, err
		}
		show(fmt.Sprintf("host %s %s: %s", escape(id), enumName(h.GetStatus(), "HOST_STATUS_"), st))
		switch h.GetStatus() {
		case flotillav1.HostStatus_HOST_STATUS_DOWN, flotillav1.HostStatus_HOST_STATUS_DISCONNECTED:
			return h, &exitError{msg: fmt.Sprintf("host %s is %s: its drain waits for its agent to come back (see: flotctl host get %s)",
				id, enumName(h.GetStatus(), "HOST_STATUS_"), id), code: exitUnavailable}
		}
		if h.GetStatus() != flotillav1.HostStatus_HOST_STATUS_DRAINING && st.busy == 0 {
			return h, nil
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return h, &exitError{msg: fmt.Sprintf("timed out waiting for the drain of host %s (%s); it goes on: flotctl host get %s", id, st, id), code: exitTimedOut}
		}
		select {
		case <-ctx.Done():
			return h, ctx.Err()
		case <-time.After(progressEvery):
		}
		cctx, cancel := c.call(ctx)
		h, err = c.hosts.GetHost(cctx, &flotillav1.GetHostRequest{Id: id})
		cancel()
		if err != nil {
			return h, err
		}
	}
}

// drainState lists the instances (every page) and counts those on host id.
func (c *cli) drainState(ctx context.Context, id string) (drainState, error) {
	var st drainState
	req := &flotillav1.ListInstancesRequest{PageSize: 1000}
	for {
		cctx, cancel := c.call(ctx)
		page, err := c.instances.ListInstances(cctx, req)
		cancel()
		if err != nil {
			return st, err
		}
		for _, in := range page.GetInstances() {
			if in.GetHostId() != id {
				continue
			}
			st.left++
			if in.GetCurrentOperationId() != "" {
				st.busy++
				if st.next == "" {
					st.next = in.GetId()
				}
			}
		}
		if page.GetNextPageToken() == "" {
			return st, nil
		}
		req = proto.CloneOf(req)
		req.PageToken = page.GetNextPageToken()
	}
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
