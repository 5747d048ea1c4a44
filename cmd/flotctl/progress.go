package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// waitFlags are --wait and --wait-timeout, which every action takes.
type waitFlags struct {
	on      bool
	timeout time.Duration
}

func (w *waitFlags) define(fs *pflag.FlagSet) {
	fs.BoolVar(&w.on, "wait", false, "wait for the operation to finish, showing its progress, then show the instance")
	fs.DurationVar(&w.timeout, "wait-timeout", 0, "with --wait: give up waiting after this long, exit 5 (0: wait until the operation ends)")
}

// afterChange shows the operation a change started: at once, or with
// --wait its id at once, its progress, and in the end the instance.
func (c *cli) afterChange(ctx context.Context, op *flotillav1.Operation, w waitFlags) error {
	if !w.on {
		return printOperations(c.stdout, c.out, []*flotillav1.Operation{op})
	}
	// The id first, so that an interrupted wait leaves something to go on
	// with; on stderr when stdout is a document, which must stay parseable.
	note := c.stdout
	if c.out.document() {
		note = c.stderr
	}
	fmt.Fprintf(note, "operation %s: %s of instance %s (Ctrl-C stops waiting, not the operation)\n",
		escape(op.GetId()), enumName(op.GetKind(), "OPERATION_KIND_"), escape(op.GetInstanceId()))
	var deadline time.Time
	if w.timeout > 0 {
		deadline = time.Now().Add(w.timeout)
	}
	if !op.GetDone() {
		p := c.newProgress()
		p.show(op)
		done, err := c.waitOperation(ctx, op.GetId(), op.GetRevision(), deadline, p.show)
		p.end()
		switch {
		case err != nil && ctx.Err() != nil:
			return &exitError{msg: fmt.Sprintf("stopped waiting; operation %s goes on (see: flotctl op wait %s)", op.GetId(), op.GetId())}
		case err != nil:
			return err
		}
		op = done
	}
	cctx, cancel := c.call(ctx)
	in, err := c.instances.GetInstance(cctx, &flotillav1.GetInstanceRequest{Id: op.GetInstanceId(), MinRevision: op.GetRevision()})
	cancel()
	if status.Code(err) == codes.NotFound {
		in, err = nil, nil // deleted: nothing more to show
	}
	if err != nil {
		return err
	}
	if err := c.showResult(op, in); err != nil {
		return err
	}
	return outcome(op)
}

// showResult prints a finished operation and its instance (nil if gone):
// two tables, or one document {"operation": ..., "instance": ...}.
func (c *cli) showResult(op *flotillav1.Operation, in *flotillav1.Instance) error {
	if c.out.document() {
		ob, err := protojson.Marshal(op)
		if err != nil {
			return err
		}
		doc := `{"operation":` + string(ob)
		if in != nil {
			ib, err := protojson.Marshal(in)
			if err != nil {
				return err
			}
			doc += `,"instance":` + string(ib)
		}
		return writeJSONDoc(c.stdout, c.out, []byte(doc+"}"))
	}
	if err := printOperations(c.stdout, c.out, []*flotillav1.Operation{op}); err != nil || in == nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	return printInstances(c.stdout, c.out, []*flotillav1.Instance{in})
}

// progress shows a waited-for operation on stderr: on a terminal one
// line rewritten in place with the time waited; otherwise a plain line
// each time something changes.
type progress struct {
	w       io.Writer
	live    bool
	width   int
	began   time.Time
	last    string
	written bool
}

func (c *cli) newProgress() *progress {
	p := &progress{w: c.stderr, live: c.terminal(c.stderr), began: time.Now(), width: 200}
	if f, ok := c.stderr.(*os.File); ok && p.live {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			p.width = w
		}
	}
	return p
}

func (p *progress) show(op *flotillav1.Operation) { p.showLine(progressLine(op)) }

// showLine shows one line of progress: rewritten in place on a terminal,
// else printed when it changed.
func (p *progress) showLine(line string) {
	if !p.live {
		if line != p.last {
			fmt.Fprintln(p.w, line)
		}
		p.last = line
		return
	}
	line += fmt.Sprintf(" (%s)", time.Since(p.began).Round(time.Second))
	if r := []rune(line); len(r) >= p.width {
		line = string(r[:p.width-1])
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line) // back to the start, clear the line
	p.written = true
}

// end leaves the live line in place and moves to the next.
func (p *progress) end() {
	if p.live && p.written {
		fmt.Fprintln(p.w)
	}
}

// progressLine is "op-1 CREATE RUNNING step copy-disk: 412 MiB / 2.0 GiB at 180 MiB/s".
func progressLine(op *flotillav1.Operation) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", escape(op.GetId()), enumName(op.GetKind(), "OPERATION_KIND_"), enumName(op.GetState(), "OPERATION_STATE_"))
	if st := runningStep(op); st != "" && !op.GetDone() {
		fmt.Fprintf(&b, " step %s", escape(st))
	}
	if cp := op.GetCopy(); cp != nil && !op.GetDone() {
		fmt.Fprintf(&b, ": %s", copyText(cp))
	}
	if f := faultText(op.GetError()); f != "" {
		fmt.Fprintf(&b, ": %s", escape(f))
	}
	return b.String()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
