package main

import (
	"context"
	"fmt"
	"time"

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
)

func runOpGet(ctx context.Context, c *cli, name string, args []string) error {
	pos, err := parseArgs(newFlagSet(name), name, args, 1)
	if err != nil {
		return err
	}
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	op, err := c.operations.GetOperation(cctx, &flotillav1.GetOperationRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	return printOperation(c.stdout, c.output, op)
}

func runOpCancel(ctx context.Context, c *cli, name string, args []string) error {
	pos, err := parseArgs(newFlagSet(name), name, args, 1)
	if err != nil {
		return err
	}
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	op, err := c.operations.CancelOperation(cctx, &flotillav1.CancelOperationRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	if err := printOperation(c.stdout, c.output, op); err != nil {
		return err
	}
	if op.GetCancelRequested() && !op.GetDone() {
		fmt.Fprintf(c.stderr, "flotctl: cancel requested: %s (see: flotctl op wait %s)\n", cancelNote(op), op.GetId())
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

func runOpList(ctx context.Context, c *cli, name string, args []string) error {
	fs := newFlagSet(name)
	instance := fs.String("instance", "", "only operations on this instance")
	if _, err := parseArgs(fs, name, args, 0); err != nil {
		return err
	}
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	req := &flotillav1.ListOperationsRequest{InstanceId: *instance}
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
			return &exitError{fmt.Sprintf("server repeated page token %q", next)}
		}
		seen[next] = true
		req = proto.CloneOf(req)
		req.PageToken = next
	}
	return printOperations(c.stdout, c.output, all)
}

// parseOpWait returns the operation id and how long to wait in total.
func parseOpWait(name string, args []string) (string, time.Duration, error) {
	fs := newFlagSet(name)
	timeout := fs.Duration("timeout", defaultOpTTL, "how long to wait in total")
	pos, err := parseArgs(fs, name, args, 1)
	if err != nil {
		return "", 0, err
	}
	if *timeout <= 0 {
		return "", 0, &usageError{usageOf(name), "--timeout must be positive"}
	}
	return pos[0], *timeout, nil
}

func runOpWait(ctx context.Context, c *cli, name string, args []string) error {
	id, total, err := parseOpWait(name, args)
	if err != nil {
		return err
	}
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	op, err := c.waitOperation(ctx, id, 0, time.Now().Add(total))
	if op != nil {
		if perr := printOperations(c.stdout, c.output, []*flotillav1.Operation{op}); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	return outcome(op)
}

// waitAndShow waits for op to finish without a deadline of its own (the
// operation has one on the server), then prints it and its instance.
func (c *cli) waitAndShow(ctx context.Context, op *flotillav1.Operation) error {
	if !op.GetDone() {
		var err error
		if op, err = c.waitOperation(ctx, op.GetId(), op.GetRevision(), time.Time{}); err != nil {
			return err
		}
	}
	if err := printOperations(c.stdout, c.output, []*flotillav1.Operation{op}); err != nil {
		return err
	}
	cctx, cancel := c.call(ctx)
	in, err := c.instances.GetInstance(cctx, &flotillav1.GetInstanceRequest{
		Id: op.GetInstanceId(), MinRevision: op.GetRevision(),
	})
	cancel()
	switch {
	case status.Code(err) == codes.NotFound:
		// Nothing more to show.
	case err != nil:
		return err
	default:
		if c.output == "table" {
			fmt.Fprintln(c.stdout)
		}
		if err := printInstances(c.stdout, c.output, []*flotillav1.Instance{in}); err != nil {
			return err
		}
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
		return &exitError{msg}
	}
	return nil
}

// waitOperation calls WaitOperation until the operation is done, the
// deadline (if not zero) passes, or ctx ends. On a deadline it returns the
// operation as last seen together with an error.
// minRev, if positive, is the revision the write returned: the server waits
// until it has applied it, so a follower never answers NOT_FOUND for an
// operation the leader just accepted.
func (c *cli) waitOperation(ctx context.Context, id string, minRev int64, deadline time.Time) (*flotillav1.Operation, error) {
	var last *flotillav1.Operation
	failures := 0
	for {
		wait := waitPerCall
		if !deadline.IsZero() {
			rem := time.Until(deadline)
			if rem <= 0 {
				state := "unknown"
				if last != nil {
					state = enumName(last.GetState(), "OPERATION_STATE_")
				}
				return last, &exitError{fmt.Sprintf("timed out waiting for operation %s (state %s)", id, state)}
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
