package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// Grpcurl drives a coordinator through the real grpcurl binary, with server
// reflection only (no proto files), as an operator would.
type Grpcurl struct {
	Bin  string
	Addr string
	t    testing.TB
	// transport is grpcurl's transport flags: plaintext, or mutual TLS.
	transport []string
}

// NewGrpcurl returns a driver for the coordinator at addr, over plaintext.
func NewGrpcurl(t testing.TB, addr string) *Grpcurl {
	return &Grpcurl{Bin: GrpcurlPath(t), Addr: addr, t: t, transport: []string{"-plaintext"}}
}

// NewGrpcurlTLS returns a driver for the coordinator at addr that speaks
// mutual TLS, presenting the client certificate f.
func NewGrpcurlTLS(t testing.TB, addr string, f mtls.Files) *Grpcurl {
	return &Grpcurl{Bin: GrpcurlPath(t), Addr: addr, t: t, transport: []string{"-cacert", f.CA, "-cert", f.Cert, "-key", f.Key}}
}

// CallError is a gRPC error as grpcurl reported it.
type CallError struct {
	Code    codes.Code
	Message string
	Details []map[string]any
}

func (e *CallError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Call invokes a unary method with a JSON request (a map, a struct or a
// JSON string) and decodes the JSON response into a map.
func (g *Grpcurl) Call(method string, req any) (map[string]any, error) {
	g.t.Helper()
	body, err := encode(req)
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(slices.Clone(g.transport), "-format-error", "-emit-defaults", "-max-time", "110", "-d", body, g.Addr, method)
	cmd := exec.CommandContext(ctx, g.Bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	out := map[string]any{}
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
			g.t.Fatalf("grpcurl %s: undecodable output %q (stderr %q): %v", method, stdout.String(), stderr.String(), err)
		}
	}
	if runErr == nil {
		return out, nil
	}
	// With -format-error a failed call prints the status as JSON on stderr.
	status := map[string]any{}
	_ = json.Unmarshal(stderr.Bytes(), &status)
	if c, ok := status["code"].(float64); ok {
		out = status
		ce := &CallError{Code: codes.Code(int(c))}
		ce.Message, _ = out["message"].(string)
		if ds, ok := out["details"].([]any); ok {
			for _, d := range ds {
				if m, ok := d.(map[string]any); ok {
					ce.Details = append(ce.Details, m)
				}
			}
		}
		return nil, ce
	}
	// No status at all: grpcurl could not reach the server.
	return nil, &CallError{Code: codes.Unavailable, Message: strings.TrimSpace(stderr.String())}
}

// MustCall is Call that fails the test on error.
func (g *Grpcurl) MustCall(method string, req any) map[string]any {
	g.t.Helper()
	out, err := g.Call(method, req)
	if err != nil {
		g.t.Fatalf("%s %v: %v", method, req, err)
	}
	return out
}

// Stream is a running server-streaming call; each message arrives as a map.
type Stream struct {
	C      <-chan map[string]any
	cancel context.CancelFunc
	done   chan struct{}
}

// Close stops the stream.
func (s *Stream) Close() { s.cancel(); <-s.done }

// Stream starts a server-streaming method.
func (g *Grpcurl) Stream(method string, req any) *Stream {
	g.t.Helper()
	body, err := encode(req)
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, g.Bin, append(slices.Clone(g.transport), "-emit-defaults", "-d", body, g.Addr, method)...)
	pr, err := cmd.StdoutPipe()
	if err != nil {
		g.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	ch := make(chan map[string]any, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		dec := json.NewDecoder(bufio.NewReader(pr))
		for {
			m := map[string]any{}
			if err := dec.Decode(&m); err != nil {
				if err != io.EOF && ctx.Err() == nil {
					g.t.Logf("grpcurl stream %s: %v", method, err)
				}
				_ = cmd.Wait()
				return
			}
			ch <- m
		}
	}()
	s := &Stream{C: ch, cancel: cancel, done: done}
	g.t.Cleanup(s.Close)
	return s
}

func encode(req any) (string, error) {
	switch r := req.(type) {
	case nil:
		return "{}", nil
	case string:
		return r, nil
	}
	b, err := json.Marshal(req)
	return string(b), err
}

// Str reads a nested string field, e.g. Str(m, "instance", "status").
func Str(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[p]
	}
	switch v := cur.(type) {
	case string:
		return v
	case float64, bool:
		return fmt.Sprint(v)
	case nil:
		return ""
	}
	b, _ := json.Marshal(cur)
	return strings.TrimSpace(string(b))
}
