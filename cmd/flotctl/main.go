// Command flotctl is the operator CLI for a Flotilla control plane.
//
//	flotctl [--addr HOST:PORT] [--timeout 30s] [-o table|json] COMMAND [ARGS]
//
// Exit codes: 0 success, 1 an RPC failed or a waited-for operation ended
// FAILED or CANCELED, 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/version"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

const (
	defaultAddr    = "127.0.0.1:7443"
	defaultTimeout = 30 * time.Second
	globalUsage    = "[--addr HOST:PORT] [--timeout 30s] [-o table|json] COMMAND [ARGS]"
)

// cli holds the global options and the clients shared by all subcommands.
type cli struct {
	stdout, stderr io.Writer
	addr           string
	tls            mtls.Files
	timeout        time.Duration // per ordinary RPC
	output         string        // "table" or "json"

	instances  flotillav1.InstanceServiceClient
	operations flotillav1.OperationServiceClient
	hosts      flotillav1.HostServiceClient
	usage      flotillav1.UsageServiceClient
	networks   flotillav1.NetworkServiceClient
}

// commandList names every subcommand with its usage line, in help order.
var commandList = []struct{ name, usage string }{
	{"create", "create --name N --image I [--vcpus 1] [--memory-mib 256] [--disk-gib 0] [--label K=V]... [--network NET[=IPV4]]... [--ssh-key KEY]... [--user-data-file F] [--readiness-timeout 10m] [--decommission-timeout D] [--request-id R] [--wait]"},
	{"get", "get ID [--vocabulary nova,azure,...]"},
	{"list", "list [--status RUNNING,STOPPED] [--all] [--vocabulary nova,azure,...]"},
	{"watch", "watch [--from-revision R] [--id ID] [--vocabulary nova,azure,...]"},
	{"start", "start ID [--request-id R] [--wait]"},
	{"stop", "stop ID [--graceful 10m] [--force] [--decommission-timeout D] [--request-id R] [--wait]"},
	{"restart", "restart ID [--hard] [--request-id R] [--wait]"},
	{"pause", "pause ID [--request-id R] [--wait]"},
	{"unpause", "unpause ID [--request-id R] [--wait]"},
	{"suspend", "suspend ID [--request-id R] [--wait]"},
	{"resume", "resume ID [--request-id R] [--wait]"},
	{"delete", "delete ID [--decommission-timeout D] [--request-id R] [--wait]"},
	{"update", "update ID [--name N] [--label K=V]... [--clear-labels] [--recovery leave|restart|mark-failed [--max-restarts N]] [--request-id R] [--wait]"},
	{"resize", "resize ID [--vcpus N] [--memory-mib M] [--disk-gib G] [--to HOST] [--confirm-after 1h] [--graceful 10m] [--request-id R] [--wait]"},
	{"confirm-resize", "confirm-resize ID [--request-id R] [--wait]"},
	{"revert-resize", "revert-resize ID [--graceful 10m] [--request-id R] [--wait]"},
	{"extend", "extend ID --disk-gib G [--request-id R] [--wait]"},
	{"move", "move ID [--to HOST] [--graceful 10m] [--request-id R] [--wait]"},
	{"mark-operational", "mark-operational ID"},
	{"set-password", "set-password ID --password-file FILE|- [--user root] [--request-id R] [--wait]"},
	{"usage", "usage ID [--vocabulary rightscale|azure] [--from T] [--to T]"},
	{"op get", "op get ID"},
	{"op list", "op list [--instance ID]"},
	{"op wait", "op wait ID [--timeout 5m]"},
	{"op cancel", "op cancel ID"},
	{"host list", "host list"},
	{"host get", "host get ID"},
	{"host cordon", "host cordon ID"},
	{"host uncordon", "host uncordon ID"},
	{"host drain", "host drain ID [--policy stop|move] [--graceful 10m]"},
	{"host remove", "host remove ID"},
	{"network create", "network create NAME --cidr CIDR [--gateway IP] [--mode nat|isolated|bridge] [--bridge BR]"},
	{"network list", "network list"},
	{"network get", "network get NAME"},
	{"network delete", "network delete NAME"},
}

// runFunc parses a subcommand's own flags and does the work.
type runFunc func(ctx context.Context, c *cli, name string, args []string) error

// runners maps a subcommand ("get", "op wait", ...) to its implementation.
var runners = map[string]runFunc{
	"create": runMutation, "start": runMutation, "stop": runMutation,
	"restart": runMutation, "pause": runMutation, "unpause": runMutation, "update": runMutation,
	"suspend": runMutation, "resume": runMutation, "delete": runMutation,
	"resize": runMutation, "confirm-resize": runMutation, "revert-resize": runMutation, "extend": runMutation, "move": runMutation,
	"mark-operational": runMarkOperational, "set-password": runSetPassword,
	"get": runGet, "list": runList, "watch": runWatch, "usage": runUsage,
	"op get": runOpGet, "op list": runOpList, "op wait": runOpWait, "op cancel": runOpCancel,
	"host list": runHostList, "host get": runHostGet,
	"host cordon": runHostCordon, "host uncordon": runHostCordon, "host drain": runHostDrain, "host remove": runHostRemove,
	"network create": runNetworkCreate, "network list": runNetworkList, "network get": runNetworkGet, "network delete": runNetworkDelete,
}

// usageOf returns the usage line of a subcommand.
func usageOf(name string) string {
	for _, cmd := range commandList {
		if cmd.name == name {
			return cmd.usage
		}
	}
	return globalUsage
}

// usageError is a bad command line; it exits 2 with a usage line.
type usageError struct {
	usage string // the usage line of the (sub)command, without "flotctl "
	msg   string
}

func (e *usageError) Error() string { return e.msg }

// helpError asks for the help text of a (sub)command; it exits 0.
type helpError struct{ text string }

func (e *helpError) Error() string { return "help requested" }

// exitError is an already-explained failure: msg goes to stderr, exit code 1.
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	name, rest, err := c.parseGlobal(args, getenv)
	if err == nil {
		err = c.dispatch(ctx, name, rest)
	}
	return report(err, stdout, stderr)
}

// report prints err and maps it to an exit code.
func report(err error, stdout, stderr io.Writer) int {
	var (
		ue *usageError
		he *helpError
		ee *exitError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &he):
		fmt.Fprint(stdout, he.text)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "flotctl: %s\nusage: flotctl %s\n", ue.msg, ue.usage)
		return 2
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "flotctl: %s\n", ee.msg)
		return 1
	}
	if st, ok := status.FromError(err); ok {
		fmt.Fprintf(stderr, "flotctl: %s: %s\n", st.Code(), safe(st.Message()))
	} else {
		fmt.Fprintf(stderr, "flotctl: %s\n", safe(err.Error()))
	}
	return 1
}

// parseGlobal parses the flags before the subcommand and returns the
// subcommand name ("get", "op wait", ...) and its arguments.
func (c *cli) parseGlobal(args []string, getenv func(string) string) (string, []string, error) {
	addr := getenv("FLOTILLA_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs := newFlagSet("flotctl")
	fs.StringVar(&c.addr, "addr", addr, "coordinator address (env FLOTILLA_ADDR)")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "timeout of each RPC")
	fs.StringVar(&c.tls.Cert, "tls-cert", getenv("FLOTILLA_TLS_CERT"), "client certificate for mutual TLS (env FLOTILLA_TLS_CERT)")
	fs.StringVar(&c.tls.Key, "tls-key", getenv("FLOTILLA_TLS_KEY"), "its private key (env FLOTILLA_TLS_KEY)")
	fs.StringVar(&c.tls.CA, "tls-ca", getenv("FLOTILLA_TLS_CA"), "CA bundle that signs the coordinators (env FLOTILLA_TLS_CA)")
	fs.StringVar(&c.output, "o", "table", "output format: table or json")
	fs.StringVar(&c.output, "output", "table", "same as -o")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, &helpError{globalHelp(fs)}
		}
		return "", nil, &usageError{globalUsage, err.Error()}
	}
	if *showVersion { // printed as help is: on stdout, exit 0
		return "", nil, &helpError{version.Get().String("flotctl")}
	}
	switch {
	case c.output != "table" && c.output != "json":
		return "", nil, &usageError{globalUsage, fmt.Sprintf("-o must be table or json, not %q", c.output)}
	case c.timeout <= 0:
		return "", nil, &usageError{globalUsage, "--timeout must be positive"}
	case c.addr == "":
		return "", nil, &usageError{globalUsage, "--addr must not be empty"}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return "", nil, &usageError{globalUsage, "missing command"}
	}
	name := rest[0]
	if name == "help" {
		return "", nil, &helpError{globalHelp(fs)}
	}
	if name == "op" || name == "host" || name == "network" {
		if len(rest) < 2 {
			return "", nil, &usageError{globalUsage, fmt.Sprintf("missing %s subcommand", name)}
		}
		name += " " + rest[1]
		rest = rest[1:]
	}
	if _, ok := runners[name]; !ok {
		return "", nil, &usageError{globalUsage, fmt.Sprintf("unknown command %q", name)}
	}
	return name, rest[1:], nil
}

func (c *cli) dispatch(ctx context.Context, name string, args []string) error {
	return runners[name](ctx, c, name, args)
}

// connect creates the gRPC clients. grpc.NewClient does not dial, so the
// first RPC reports an unreachable server.
func (c *cli) connect() (func(), error) {
	creds := insecure.NewCredentials()
	if c.tls.Enabled() {
		cfg, err := mtls.Client(c.tls)
		if err != nil {
			return nil, &exitError{err.Error()}
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, &exitError{fmt.Sprintf("bad address %q: %v", c.addr, err)}
	}
	c.instances = flotillav1.NewInstanceServiceClient(conn)
	c.operations = flotillav1.NewOperationServiceClient(conn)
	c.hosts = flotillav1.NewHostServiceClient(conn)
	c.networks = flotillav1.NewNetworkServiceClient(conn)
	c.usage = flotillav1.NewUsageServiceClient(conn)
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

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses flags that may appear before, between or after the
// positional arguments ("stop ID --force" as well as "stop --force ID") and
// checks that exactly npos positional arguments were given.
func parseArgs(fs *flag.FlagSet, name string, args []string, npos int) ([]string, error) {
	usage := usageOf(name)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpError{subHelp(fs, usage)}
			}
			return nil, &usageError{usage, err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			pos = append(pos, rest...) // everything after "--" is positional
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) != npos {
		switch {
		case npos == 0:
			return nil, &usageError{usage, fmt.Sprintf("unexpected argument %q", pos[0])}
		case len(pos) < npos:
			return nil, &usageError{usage, "missing ID"}
		default:
			return nil, &usageError{usage, fmt.Sprintf("unexpected argument %q", pos[npos])}
		}
	}
	for _, p := range pos {
		if p == "" {
			return nil, &usageError{usage, "ID must not be empty"}
		}
	}
	return pos, nil
}

func subHelp(fs *flag.FlagSet, usage string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: flotctl [global flags] %s\n", usage)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return b.String()
}

func globalHelp(fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: flotctl %s\n\nglobal flags:\n", globalUsage)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	b.WriteString("\ncommands:\n")
	for _, cmd := range commandList {
		fmt.Fprintf(&b, "  %s\n", cmd.usage)
	}
	return b.String()
}
