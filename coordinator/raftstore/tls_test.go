package raftstore

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// tlsPair returns server and client configurations for a certificate of
// role from ca, both requiring a coordinator on the other side.
func tlsPair(t *testing.T, ca *mtls.CA, name, role string) (srv, cli *tls.Config) {
	t.Helper()
	f, err := ca.Issue(name, role)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mtls.Server(f)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mtls.Client(f)
	if err != nil {
		t.Fatal(err)
	}
	return mtls.RequirePeer(s, mtls.RoleCoordinator, ""), mtls.RequirePeer(c, mtls.RoleCoordinator, "")
}

func startLayer(t *testing.T, srv, cli *tls.Config) *tlsLayer {
	t.Helper()
	l, err := newTLSLayer("127.0.0.1:0", nil, srv, cli, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// refused waits until the server ends a connection it did not accept.
func refused(t *testing.T, c net.Conn, what string) {
	t.Helper()
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(handshakeTimeout + 5*time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("%s: the server answered", what)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("%s: the server neither refused nor answered: %v", what, err)
	}
}

// TestRaftPortTakesCoordinatorsOnly: under mutual TLS the Raft port hands
// Raft only connections from coordinators of the cluster's CA; plaintext,
// an agent's certificate and another CA's are dropped at the handshake,
// and a coordinator does not talk to a server that is not one.
func TestRaftPortTakesCoordinatorsOnly(t *testing.T) {
	ca, err := mtls.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, cli := tlsPair(t, ca, "c1", mtls.RoleCoordinator)
	server := startLayer(t, srv, cli)
	addr := raft.ServerAddress(server.Addr().String())
	_, cli2 := tlsPair(t, ca, "c2", mtls.RoleCoordinator)
	peer := startLayer(t, srv, cli2)

	// Turned away: plaintext, an agent's certificate, another CA's.
	plain, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	refused(t, plain, "plaintext")
	_, agentCli := tlsPair(t, ca, "h1", mtls.RoleAgent)
	agent, err := tls.Dial("tcp", string(addr), agentCli.Clone())
	if err == nil {
		refused(t, agent, "an agent's certificate")
	}
	other, err := mtls.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, strangerCli := tlsPair(t, other, "c9", mtls.RoleCoordinator)
	strangerCli.RootCAs = cli.RootCAs // it trusts our server; we must not trust it
	stranger, err := tls.Dial("tcp", string(addr), strangerCli)
	if err == nil {
		refused(t, stranger, "another CA's certificate")
	}

	// A coordinator gets through, and is the first connection Raft sees.
	c, err := peer.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatalf("coordinator dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	got, err := server.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	b := make([]byte, 1)
	if _, err := io.ReadFull(got, b); err != nil || b[0] != 'x' {
		t.Fatalf("accepted connection read %q, %v", b, err)
	}

	// A coordinator does not talk to a server whose certificate is an agent's.
	agentSrv, _ := tlsPair(t, ca, "h2", mtls.RoleAgent)
	impostor := startLayer(t, agentSrv, cli)
	if c, err := peer.Dial(raft.ServerAddress(impostor.Addr().String()), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("dialed a server presenting an agent's certificate")
	}

	server.Close()
	if _, err := server.Accept(); err == nil {
		t.Fatal("Accept after Close returned a connection")
	}
}
