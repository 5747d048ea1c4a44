// Package mtls builds the TLS configurations Flotilla's processes use when
// mutual TLS is configured: every connection, between agents, coordinators
// and clients, presents a certificate signed by the cluster's CA and checks
// the other side's.
//
// Roles are carried in the certificate's Organizational Unit: "agent" for
// hypervisor agents (the Common Name is the host id the agent may speak
// for), "coordinator" for coordinators, anything else for operators.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Roles in a certificate's Organizational Unit.
const (
	RoleAgent       = "agent"
	RoleCoordinator = "coordinator"
)

// Files names a certificate, its key and the CA bundle that signs peers.
type Files struct {
	Cert, Key, CA string
}

// Enabled reports whether any file is given.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

func (f Files) load() (tls.Certificate, *x509.CertPool, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return tls.Certificate{}, nil, errors.New("mtls: --tls-cert, --tls-key and --tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("mtls: %w", err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("mtls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("mtls: %s holds no PEM certificate", f.CA)
	}
	return cert, pool, nil
}

// Server is the configuration of a coordinator's listener: client
// certificates are required and verified.
func Server(f Files) (*tls.Config, error) {
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}, nil
}

// Client is the configuration for dialing a coordinator.
func Client(f Files) (*tls.Config, error) {
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

// Identity is who a verified peer certificate says the caller is.
type Identity struct {
	Name  string   // Common Name
	Roles []string // Organizational Units
}

// Has reports whether the identity carries role.
func (id Identity) Has(role string) bool { return slices.Contains(id.Roles, role) }

// PeerIdentity returns the verified client certificate's identity, and
// false when the connection is not mutual TLS (plaintext mode).
func PeerIdentity(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	leaf := info.State.VerifiedChains[0][0]
	return Identity{Name: leaf.Subject.CommonName, Roles: leaf.Subject.OrganizationalUnit}, true
}

// RequirePeer returns a copy of cfg (from Server or Client) that also
// refuses, during the handshake, a peer whose verified certificate does not
// carry role or, when name is not empty, does not have name as its Common
// Name: for connections only some peers may open or answer, such as the
// Raft transport's (any coordinator) or a disk pull's (one agent).
func RequirePeer(cfg *tls.Config, role, name string) *tls.Config {
	c := cfg.Clone()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return errors.New("mtls: the peer presented no verified certificate")
		}
		leaf := cs.VerifiedChains[0][0]
		if !slices.Contains(leaf.Subject.OrganizationalUnit, role) || (name != "" && leaf.Subject.CommonName != name) {
			want := "a " + role
			if name != "" {
				want = fmt.Sprintf("%s %q", role, name)
			}
			return fmt.Errorf("mtls: the peer's certificate names %q (roles %v), not %s",
				leaf.Subject.CommonName, leaf.Subject.OrganizationalUnit, want)
		}
		return nil
	}
	return c
}
