package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes, documented in docs/cli.md.
const (
	exitOK          = 0
	exitFailed      = 1 // anything else, e.g. an operation that ended FAILED
	exitUsage       = 2 // a bad command line or config file
	exitNotFound    = 3 // NOT_FOUND
	exitRefused     = 4 // the server refused the request as it stands
	exitTimedOut    = 5 // DEADLINE_EXCEEDED, or --wait-timeout passed
	exitUnavailable = 6 // no coordinator answered
)

// usageError is a bad command line; it exits 2.
type usageError struct {
	cmd string // the command's path ("op wait"); "" if not known yet
	msg string
}

func (e *usageError) Error() string { return e.msg }

// exitError is an already-explained failure with its exit code.
type exitError struct {
	msg  string
	code int // exitFailed if 0
}

func (e *exitError) Error() string { return e.msg }

// report prints err as one line on stderr and maps it to an exit code.
func report(err error, cmd *cobra.Command, c *cli) int {
	var (
		ue *usageError
		ee *exitError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		name := ue.cmd
		if name == "" && cmd != nil {
			name = commandName(cmd)
		}
		fmt.Fprintf(c.stderr, "flotctl: %s (see: flotctl %s)\n", escape(ue.msg), strings.TrimSpace(name+" --help"))
		return exitUsage
	case errors.As(err, &ee):
		fmt.Fprintf(c.stderr, "flotctl: %s\n", escape(ee.msg))
		if ee.code == 0 {
			return exitFailed
		}
		return ee.code
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(c.stderr, "flotctl: interrupted")
		return exitFailed
	}
	if st, ok := status.FromError(err); ok {
		code := codeOf(st.Code())
		fmt.Fprintf(c.stderr, "flotctl: %s: %s%s\n", st.Code(), escape(st.Message()), hint(st.Code(), c, cmd))
		return code
	}
	fmt.Fprintf(c.stderr, "flotctl: %s\n", escape(err.Error()))
	return exitFailed
}

// codeOf maps a gRPC status to flotctl's exit code.
func codeOf(code codes.Code) int {
	switch code {
	case codes.OK:
		return exitOK
	case codes.NotFound:
		return exitNotFound
	case codes.FailedPrecondition, codes.InvalidArgument, codes.AlreadyExists, codes.OutOfRange,
		codes.ResourceExhausted, codes.Aborted, codes.PermissionDenied, codes.Unauthenticated:
		return exitRefused
	case codes.DeadlineExceeded:
		return exitTimedOut
	case codes.Unavailable:
		return exitUnavailable
	}
	return exitFailed
}

// hint says what to do about an error with this code from command cmd
// ("" if nothing useful can be said).
func hint(code codes.Code, c *cli, cmd *cobra.Command) string {
	list, get := related(cmd)
	switch code {
	case codes.NotFound:
		return " (check the id: " + list + ")"
	case codes.FailedPrecondition:
		if get != "" {
			return " (see its state: " + get + ")"
		}
		return ""
	case codes.InvalidArgument, codes.OutOfRange:
		return " (fix the value; see the command's --help and docs/api.md)"
	case codes.AlreadyExists:
		return " (pick another name, or use the existing one)"
	case codes.PermissionDenied, codes.Unauthenticated:
		return " (check --tls-cert/--tls-key/--tls-ca and the certificate's role)"
	case codes.ResourceExhausted:
		return " (free capacity, or retry later)"
	case codes.DeadlineExceeded:
		return fmt.Sprintf(" (the server did not answer within --timeout %s; retry or raise --timeout)", c.timeout)
	case codes.Unavailable:
		return fmt.Sprintf(" (is a coordinator running at %s? set --coordinator or FLOTILLA_COORDINATOR)", strings.Join(c.coordinators, ","))
	}
	return ""
}

// related are the commands that list what cmd acts on, and show the one
// it acted on ("" if none).
func related(cmd *cobra.Command) (list, get string) {
	name := ""
	var pos []string
	if cmd != nil {
		name = commandName(cmd)
		pos = cmd.Flags().Args()
	}
	group := ""
	for _, g := range []string{"op ", "host ", "network ", "cluster servers "} {
		if strings.HasPrefix(name, g) {
			group = g
		}
	}
	list = "flotctl " + group + "list"
	if len(pos) == 1 && group != "cluster servers " {
		get = "flotctl " + group + "get " + escape(pos[0])
	}
	return list, get
}
