package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// hostile serves hosts whose fields carry terminal escapes and newlines, as
// an agent believed by an older coordinator could have registered them.
type hostile struct {
	flotillav1.UnimplementedHostServiceServer
	removed []string
}

const evil = "1.0\x1b[2J\x1b]0;pwned\x07\nh9  READY\x00"

func (h *hostile) ListHosts(context.Context, *flotillav1.ListHostsRequest) (*flotillav1.ListHostsResponse, error) {
	return &flotillav1.ListHostsResponse{Hosts: []*flotillav1.Host{{Id: "h1", HypervisorKind: "fake\r", AgentVersion: evil}}}, nil
}

func (h *hostile) RemoveHost(_ context.Context, r *flotillav1.RemoveHostRequest) (*flotillav1.RemoveHostResponse, error) {
	if r.Id == "busy" {
		return nil, status.Error(codes.FailedPrecondition, "host \"busy\": instance i-1\x1b[31m is placed on it")
	}
	h.removed = append(h.removed, r.Id)
	return &flotillav1.RemoveHostResponse{}, nil
}

func serveHostile(t *testing.T, h *hostile) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	flotillav1.RegisterHostServiceServer(s, h)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// flotctl never prints a control character it got from the server.
func TestNoControlCharactersFromTheServer(t *testing.T) {
	h := &hostile{}
	addr := serveHostile(t, h)
	code, out, errOut := runCLI(context.Background(), addr, "host", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if lines := strings.Count(out, "\n"); lines != 2 {
		t.Errorf("%d lines, want a header and one row:\n%s", lines, out)
	}
	for _, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f) {
			t.Fatalf("output holds control character %q:\n%q", r, out)
		}
	}
	if !strings.Contains(out, `1.0\x1b[2J`) {
		t.Errorf("the escape is not shown escaped:\n%s", out)
	}

	code, out, errOut = runCLI(context.Background(), addr, "host", "remove", "h1")
	if code != 0 || out != "removed host h1\n" || len(h.removed) != 1 || h.removed[0] != "h1" {
		t.Fatalf("host remove: exit %d, %q %q, removed %v", code, out, errOut, h.removed)
	}
	code, _, errOut = runCLI(context.Background(), addr, "host", "remove", "busy")
	if code != 4 || strings.ContainsRune(errOut, 0x1b) || !strings.Contains(errOut, "FailedPrecondition") {
		t.Fatalf("a refused remove: exit %d, stderr %q", code, errOut)
	}
}
