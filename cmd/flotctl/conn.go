package main

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// connect creates the gRPC clients. The coordinators are tried in turn:
// gRPC's pick_first takes the first address that accepts a connection,
// so a member that is down costs a refused connection, not the command.
// (Any member serves the API; writes reach the leader through it.)
// grpc.NewClient does not dial, so the first RPC reports an unreachable
// cluster.
func (c *cli) connect() (func(), error) {
	creds := insecure.NewCredentials()
	if c.tls.Enabled() {
		cfg, err := mtls.Client(c.tls)
		if err != nil {
			return nil, &exitError{msg: fmt.Sprintf("%v (check --tls-cert, --tls-key and --tls-ca)", err), code: exitUsage}
		}
		creds = credentials.NewTLS(cfg)
	}
	target := c.coordinators[0]
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if len(c.coordinators) > 1 {
		r := manual.NewBuilderWithScheme("flotctl")
		addrs := make([]resolver.Address, len(c.coordinators))
		for i, a := range c.coordinators {
			host, _, _ := net.SplitHostPort(a)
			addrs[i] = resolver.Address{Addr: a, ServerName: host}
		}
		r.InitialState(resolver.State{Addresses: addrs})
		target = "flotctl:///coordinators"
		opts = append(opts, grpc.WithResolvers(r))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, &exitError{msg: fmt.Sprintf("bad coordinator address %q: %v", target, err), code: exitUsage}
	}
	c.instances = flotillav1.NewInstanceServiceClient(conn)
	c.operations = flotillav1.NewOperationServiceClient(conn)
	c.hosts = flotillav1.NewHostServiceClient(conn)
	c.networks = flotillav1.NewNetworkServiceClient(conn)
	c.projects = flotillav1.NewProjectServiceClient(conn)
	c.images = flotillav1.NewImageServiceClient(conn)
	c.usage = flotillav1.NewUsageServiceClient(conn)
	c.cluster = flotillav1.NewClusterServiceClient(conn)
	return func() { conn.Close() }, nil
}

// call returns a context for one ordinary RPC, bounded by --timeout.
func (c *cli) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// open connects for one unary call and bounds it by --timeout; done ends
// both.
func (c *cli) open(ctx context.Context) (context.Context, func(), error) {
	closeConn, err := c.connect()
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := c.call(ctx)
	return cctx, func() { cancel(); closeConn() }, nil
}
