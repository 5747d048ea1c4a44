package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
)

// checkPlaintext refuses a coordinator without TLS that would listen where
// other machines reach it: in plaintext every caller holds every role (it
// could register as any host, change membership, delete anything), so
// plaintext is for loopback development clusters only. --insecure-dev says
// so explicitly; without it, loopback plaintext still works (tests, make
// demo) with a warning.
func checkPlaintext(cfg Config) error {
	if cfg.TLS.Enabled() {
		if cfg.InsecureDev {
			return errors.New("--insecure-dev and --tls-cert/--tls-key/--tls-ca exclude each other")
		}
		return nil
	}
	for flag, addr := range map[string]string{"--listen": cfg.APIAddr, "--raft-addr": cfg.RaftAddr} {
		if addr != "" && !Loopback(addr) {
			return fmt.Errorf("%s %s is not a loopback address and TLS is off: give --tls-cert, --tls-key and --tls-ca "+
				"(plaintext, even with --insecure-dev, serves only loopback: every caller would be an admin)", flag, addr)
		}
	}
	if cfg.InsecureDev {
		cfg.Logger.Error("INSECURE DEVELOPMENT MODE (--insecure-dev): plaintext, no authentication; every caller holds every role (admin, operator, viewer, agent, coordinator)",
			"api", cfg.APIAddr, "raft", cfg.RaftAddr)
	} else {
		cfg.Logger.Warn("plaintext on loopback without TLS: every local caller holds every role; use --tls-* (or say --insecure-dev)",
			"api", cfg.APIAddr)
	}
	return nil
}

// Loopback reports whether addr (host:port) can be reached from this
// machine only: a loopback IP or "localhost". An empty host (every
// interface) is not.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// chainGuard makes one interceptor of the guards, in order.
func chainGuard(ics ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		next := h
		for i := len(ics) - 1; i >= 0; i-- {
			ic, n := ics[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, n) }
		}
		return next(ctx, req)
	}
}
