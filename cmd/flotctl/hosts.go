package main

import (
	"context"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func runHostList(ctx context.Context, c *cli, name string, args []string) error {
	if _, err := parseArgs(newFlagSet(name), name, args, 0); err != nil {
		return err
	}
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	cctx, cancel := c.call(ctx)
	defer cancel()
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
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	cctx, cancel := c.call(ctx)
	defer cancel()
	h, err := c.hosts.GetHost(cctx, &flotillav1.GetHostRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	return printHosts(c.stdout, c.output, []*flotillav1.Host{h})
}
