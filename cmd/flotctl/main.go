// Command flotctl is the operator CLI for a Flotilla control plane.
//
//	flotctl [--coordinator HOST:PORT[,HOST:PORT...]] [-o table|wide|json|yaml|jsonpath=EXPR] COMMAND [ARGS] [FLAGS]
//
// Flags may come anywhere on the line. Exit codes (see docs/cli.md): 0
// success, 1 any other error (also a waited-for operation that ended
// FAILED or CANCELED), 2 usage, 3 not found, 4 refused by the server, 5
// timed out, 6 coordinators unavailable.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

const (
	defaultAddr    = "127.0.0.1:7443"
	defaultTimeout = 30 * time.Second
)

// cli holds the global options and the clients shared by all subcommands.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// terminal reports whether w is a terminal (live progress lines).
	terminal func(w io.Writer) bool

	flags        globalFlags // as given on the line
	coordinators []string    // tried in turn
	tls          mtls.Files
	timeout      time.Duration // per ordinary RPC
	output       string        // the -o flag as given
	out          outFmt        // output parsed

	instances  flotillav1.InstanceServiceClient
	operations flotillav1.OperationServiceClient
	hosts      flotillav1.HostServiceClient
	usage      flotillav1.UsageServiceClient
	networks   flotillav1.NetworkServiceClient
	projects   flotillav1.ProjectServiceClient
	images     flotillav1.ImageServiceClient
	cluster    flotillav1.ClusterServiceClient
}

// terminalCheck is how run tells a terminal (tests pretend).
var terminalCheck = isTerminal

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv, terminal: terminalCheck}
	root := newRoot(c)
	root.SetArgs(oldStyleFlags(root, args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	return report(err, cmd, c)
}
