package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Each WaitOperation call asks the server to wait at most waitPerCall and
// gives up on the client side waitSlack later, so that no single call takes
// more than 60 s.
var (
	waitPerCall  = 50 * time.Second
	waitSlack    = 10 * time.Second
	waitRetries  = 5           // consecutive transient errors tolerated
	waitBackoff  = time.Second // first pause after a transient error
	waitMinCall  = 200 * time.Millisecond
	defaultOpTTL = 5 * time.Minute
	// progressEvery bounds each WaitOperation call while progress is shown:
	// WaitOperation answers only when the operation is done.
	progressEvery = time.Second
)

// operationCommands are the subcommands of "op".
func operationCommands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		leaf(c, "get", "Show an operation and its steps", 1, defineNone, runOpGet),
		leaf(c, "list", "List operations, newest first", 0, defineOpList, runOpList),
		leaf(c, "wait", "Wait for an operation to finish", 1, defineOpWait, runOpWait),
		leaf(c, "cancel", "Cancel an operation that is still cancellable", 1, defineNone, runOpCancel),
	}
}

func runOpGet(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	op, err := c.operations.GetOperation(cctx, &flotillav1.GetOperationRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	return printOperation(c.stdout, c.out, op)
}

func runOpCancel(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	op, err := c.operations.CancelOperation(cctx, &flotillav1.CancelOperationRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	if err := printOperation(c.stdout, c.out, op); err != nil {
		return err
	}
	if op.GetCancelRequested() && !op.GetDone() {
		fmt.Fprintf(c.stderr, "flotctl: cancel requested: %s (see: flotctl op wait %s)\n", escape(cancelNote(op)), escape(op.GetId()))
	}
	return nil
}

// cancelNote says when a canceled operation that is not done yet rolls back.
func cancelNote(op *flotillav1.Operation) string {
	if op.GetState() == flotillav1.OperationState_OPERATION_STATE_ROLLING_BACK {
		// Canceled between steps or while waiting to retry: at once.
		return fmt.Sprintf("operation %s is rolling back", op.GetId())
	}
	// A step on a host runs to its end; only then does the rollback start.
	step := "current step"
	if name := runningStep(op); name != "" {
		step = "step " + name
	}
	return fmt.Sprintf("operation %s rolls back once its %s ends", op.GetId(), step)
}

// runningStep names the step of op that is running, else op.step.
func runningStep(op *flotillav1.Operation) string {
	for _, st := range op.GetSteps() {
		if st.GetState() == flotillav1.StepState_STEP_STATE_RUNNING {
			return st.GetName()
		}
	}
	return op.GetStep()
}

func defineOpList(fs *pflag.FlagSet, _ string) func([]string) (*flotillav1.ListOperationsRequest, error) {
	instance := fs.String("instance", "", "only operations on this instance")
	return func([]string) (*flotillav1.ListOperationsRequest, error) {
		return &flotillav1.ListOperationsRequest{InstanceId: *instance}, nil
	}
}

func runOpList(ctx context.Context, c *cli, req *flotillav1.ListOperationsRequest) error {
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	var all []*flotillav1.Operation
	seen := map[string]bool{}
	for {
		cctx, cancel := c.call(ctx)
		resp, err := c.operations.ListOperations(cctx, req)
		cancel()
		if err != nil {
			return err
		}
		all = append(all, resp.GetOperations()...)
		next := resp.GetNextPageToken()
		if next == "" {
			break
		}
		if seen[next] {
			return &exitError{msg: fmt.Sprintf("server repeated page token %q", next)}
		}
		seen[next] = true
		req = proto.CloneOf(req)
		req.PageToken = next
	}
	return printOperations(c.stdout, c.out.asList(), all)
}

// opWait is a parsed op wait.
type opWait struct {
	id    string
	total time.Duration
}

// parseOpWait returns the operation id and how long to wait in total.
func parseOpWait(name string, args []string) (string, time.Duration, error) {
	w, err := parseWith(name, args, 1, defineOpWait)
	return w.id, w.total, err
}

func defineOpWait(fs *pflag.FlagSet, name string) func([]string) (opWait, error) {
	timeout := fs.Duration("timeout", defaultOpTTL, "how long to wait in total (this command's own --timeout)")
	return func(pos []string) (opWait, error) {
		if *timeout <= 0 {
			return opWait{}, &usageError{name, "--timeout must be positive"}
		}
		return opWait{pos[0], *timeout}, nil
	}
}

func runOpWait(ctx context.Context, c *cli, w opWait) error {
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	p := c.newProgress()
	op, err := c.waitOperation(ctx, w.id, 0, time.Now().Add(w.total), p.show)
	p.end()
	if op != nil {
		if perr := printOperations(c.stdout, c.out, []*flotillav1.Operation{op}); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	return outcome(op)
}

// outcome turns a finished operation into the command's result.
func outcome(op *flotillav1.Operation) error {
	switch st := op.GetState(); st {
	case flotillav1.OperationState_OPERATION_STATE_FAILED, flotillav1.OperationState_OPERATION_STATE_CANCELED:
		msg := fmt.Sprintf("operation %s %s", op.GetId(), enumName(st, "OPERATION_STATE_"))
		if f := faultText(op.GetError()); f != "" {
			msg += ": " + f
		}
		return &exitError{msg: msg}
	}
	return nil
}

// waitOperation calls WaitOperation until the operation is done, the
// deadline (if not zero) passes, or ctx ends. On a deadline it returns the
// operation as last seen together with an error.
// minRev, if positive, is the revision the write returned: the server waits
// until it has applied it, so a follower never answers NOT_FOUND for an
// operation the leader just accepted.
// onChange, if not nil, is shown each operation as it comes; then each
// call waits at most progressEvery, so that progress shows as it happens.
func (c *cli) waitOperation(ctx context.Context, id string, minRev int64, deadline time.Time, onChange func(*flotillav1.Operation)) (*flotillav1.Operation, error) {
	var last *flotillav1.Operation
	failures := 0
	for {
		wait := waitPerCall
		if onChange != nil {
			wait = progressEvery
		}
		if !deadline.IsZero() {
			rem := time.Until(deadline)
			if rem <= 0 {
				state := "unknown"
				if last != nil {
					state = enumName(last.GetState(), "OPERATION_STATE_")
				}
				return last, &exitError{fmt.Sprintf("timed out waiting for operation %s (state %s); it goes on: flotctl op wait %s", id, state, id), exitTimedOut}
			}
			wait = min(wait, rem)
		}
		began := time.Now()
		cctx, cancel := context.WithTimeout(ctx, wait+waitSlack)
		op, err := c.operations.WaitOperation(cctx, &flotillav1.WaitOperationRequest{
			Id: id, Timeout: durationpb.New(wait), MinRevision: minRev,
		})
		cancel()
		if err != nil {
			code := status.Code(err)
			transient := code == codes.Unavailable || code == codes.DeadlineExceeded
			if ctx.Err() != nil || !transient || failures >= waitRetries {
				return last, err
			}
			select {
			case <-ctx.Done():
				return last, err
			case <-time.After(waitBackoff << failures):
			}
			failures++
			continue
		}
		failures = 0
		last = op
		if onChange != nil {
			onChange(op)
		}
		if op.GetDone() {
			return op, nil
		}
		// A server that answers early must not be polled in a tight loop.
		if time.Since(began) < waitMinCall {
			select {
			case <-ctx.Done():
				return last, ctx.Err()
			case <-time.After(waitMinCall - time.Since(began)):
			}
		}
	}
}
