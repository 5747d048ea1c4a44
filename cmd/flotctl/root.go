package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flotilla-vm/flotilla/internal/version"
)

// globalFlags are the flags every command takes; settings resolves them
// against the environment and the config file.
type globalFlags struct {
	coordinator, tlsCert, tlsKey, tlsCA, output, config string
	timeout                                             string
	version                                             bool
}

// newRoot builds the command tree. Each command is declared by one line
// in a group's list (see instanceCommands and the like), so adding one is
// a define function, a do function and that line.
func newRoot(c *cli) *cobra.Command {
	g := &c.flags
	root := &cobra.Command{
		Use:   "flotctl",
		Short: "Operate a Flotilla control plane",
		Long: "flotctl talks to the Flotilla coordinators' public API.\n\n" +
			"Settings come from flags, then the environment (FLOTILLA_COORDINATOR, FLOTILLA_TLS_CERT,\n" +
			"FLOTILLA_TLS_KEY, FLOTILLA_TLS_CA, FLOTILLA_TIMEOUT, FLOTILLA_OUTPUT), then the config file\n" +
			"(~/.config/flotilla/flotctl.yaml). Exit codes: 0 ok, 1 error, 2 usage, 3 not found,\n" +
			"4 refused, 5 timed out, 6 unavailable. See docs/cli.md.",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.version { // --version prints as help does: on stdout, exit 0
				fmt.Fprint(c.stdout, version.Get().String("flotctl"))
				return nil
			}
			if len(args) == 0 {
				return &usageError{"", "missing command"}
			}
			return &usageError{"", fmt.Sprintf("unknown command %q", args[0])}
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Name() == "completion" || cmd.Name() == "help" || cmd.HasParent() && cmd.Parent().Name() == "completion" {
				return nil
			}
			return c.settle(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.coordinator, "coordinator", "", "coordinator API addresses, host:port[,host:port...], tried in turn (env FLOTILLA_COORDINATOR; default "+defaultAddr+")")
	pf.StringVar(&g.coordinator, "addr", "", "same as --coordinator")
	_ = pf.MarkHidden("addr")
	pf.StringVar(&g.timeout, "timeout", "", "timeout of each RPC (env FLOTILLA_TIMEOUT; default 30s)")
	pf.StringVar(&g.tlsCert, "tls-cert", "", "client certificate for mutual TLS (env FLOTILLA_TLS_CERT)")
	pf.StringVar(&g.tlsKey, "tls-key", "", "its private key (env FLOTILLA_TLS_KEY)")
	pf.StringVar(&g.tlsCA, "tls-ca", "", "CA bundle that signs the coordinators (env FLOTILLA_TLS_CA)")
	pf.StringVarP(&g.output, "output", "o", "", "output format: table, wide, json, yaml or jsonpath=EXPR (env FLOTILLA_OUTPUT)")
	pf.StringVar(&g.config, "config", "", "config file (env FLOTILLA_CONFIG; default ~/.config/flotilla/flotctl.yaml)")
	root.Flags().BoolVar(&g.version, "version", false, "print flotctl's version and exit (see also: flotctl version)")
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "wide", "json", "yaml", "jsonpath="}, cobra.ShellCompDirectiveNoFileComp
	})
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{commandName(cmd), err.Error()}
	})

	root.AddCommand(completingIDs(c, instanceIDs, instanceCommands(c)...)...)
	root.AddCommand(
		group("op", "Operations: the long-running work every change starts", []string{"operation", "operations"},
			completingIDs(c, operationIDs, operationCommands(c)...)...),
		group("host", "Hypervisor hosts", []string{"hosts"}, completingIDs(c, hostIDs, hostCommands(c)...)...),
		group("network", "Virtual networks", []string{"networks", "net"}, completingIDs(c, networkNames, networkCommands(c)...)...),
		group("project", "Projects (tenants): quotas, balances, freezing", []string{"projects"}, projectCommands(c)...),
		group("image", "The image catalogue: images and the hosts that hold them", []string{"images"}, imageCommands(c)...),
		group("cluster", "The coordinators' Raft cluster", nil,
			group("servers", "The cluster's members", []string{"server"}, serverCommands(c)...),
			leaf(c, "status", "This coordinator's Raft and state machine status (GetNodeStatus)", 0, defineNodeStatus, runNodeStatus),
			leaf(c, "snapshot", "Take a Raft snapshot on this coordinator now (TakeSnapshot)", 0, defineNone, runSnapshot),
		),
		leaf(c, "version", "Show the versions of flotctl and of the servers", 0, defineNone, runVersion),
	)
	return root
}

// group is a command that only holds subcommands.
func group(name, short string, aliases []string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:     name + " COMMAND",
		Short:   short,
		Aliases: aliases,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &usageError{commandName(cmd), fmt.Sprintf("missing %s subcommand", name)}
			}
			return &usageError{commandName(cmd), fmt.Sprintf("unknown command %q", commandName(cmd)+" "+args[0])}
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}

// definer declares a command's flags on fs and returns what builds the
// command's request from them and the positional arguments. name is the
// command's path ("op wait") for error messages, "" under cobra (report
// then names the command that ran).
type definer[R any] func(fs *pflag.FlagSet, name string) func(pos []string) (R, error)

// leaf is a command taking npos positional arguments (ID, NAME), whose
// flags define declares and whose work do does.
func leaf[R any](c *cli, use, short string, npos int, define definer[R], do func(ctx context.Context, c *cli, req R) error) *cobra.Command {
	if npos == 1 && !strings.Contains(use, " ") {
		use += " ID"
	}
	var build func([]string) (R, error)
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			return checkPositional(commandName(cmd), args, npos)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := build(args)
			if err != nil {
				return err
			}
			return do(cmd.Context(), c, req)
		},
	}
	// The command's path is known only once it is attached: report names
	// the command of a usage error that names none.
	build = define(cmd.Flags(), "")
	return cmd
}

// commandName is a command's path without "flotctl ": "op wait".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(strings.TrimPrefix(cmd.CommandPath(), "flotctl"), " ")
}

// defineNone is the definer of a command without flags of its own.
func defineNone(*pflag.FlagSet, string) func([]string) ([]string, error) {
	return func(pos []string) ([]string, error) { return pos, nil }
}

// checkPositional checks that exactly npos non-empty positional
// arguments were given.
func checkPositional(name string, pos []string, npos int) error {
	if len(pos) != npos {
		switch {
		case npos == 0:
			return &usageError{name, fmt.Sprintf("unexpected argument %q", pos[0])}
		case len(pos) < npos:
			return &usageError{name, "missing ID"}
		default:
			return &usageError{name, fmt.Sprintf("unexpected argument %q", pos[npos])}
		}
	}
	for _, p := range pos {
		if p == "" {
			return &usageError{name, "ID must not be empty"}
		}
	}
	return nil
}

// newFlagSet is a flag set like a command's, for parsing outside cobra.
func newFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.Usage = func() {}
	fs.SetOutput(discard{})
	return fs
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// parseWith parses args as the command name would (flags anywhere) and
// builds its request: the parse functions the tests call.
func parseWith[R any](name string, args []string, npos int, define definer[R]) (R, error) {
	var zero R
	fs := newFlagSet(name)
	build := define(fs, name)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return zero, err
		}
		return zero, &usageError{name, err.Error()}
	}
	if err := checkPositional(name, fs.Args(), npos); err != nil {
		return zero, err
	}
	return build(fs.Args())
}

// oldStyleFlags rewrites the single-dash long flags the flag package took
// (-addr X, -graceful 1m) as --addr X, so that command lines written for
// flotctl before cobra keep working. Only names of flags flotctl has are
// rewritten, and nothing after "--".
func oldStyleFlags(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(name) > 1 && long[name] {
			out[i] = "-" + a
		}
	}
	return out
}
