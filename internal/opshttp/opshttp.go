// Package opshttp is a daemon's operations endpoint: plain HTTP serving
// /metrics (Prometheus), /healthz (the process answers), /readyz (the
// daemon's own readiness) and, when asked, /debug/pprof/. It carries no
// TLS even when the daemon's gRPC does: bind it to loopback or to a
// management network.
package opshttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is what the endpoint serves.
type Config struct {
	// Gatherer is the daemon's metrics.
	Gatherer prometheus.Gatherer
	// Ready returns nil when the daemon is ready, else why not (one line).
	Ready func() error
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
}

// Handler serves the endpoint's paths.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := cfg.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server is a running endpoint.
type Server struct {
	srv *http.Server
	lis net.Listener
	log *slog.Logger
}

// Start listens on addr (host:port) and serves in the background.
func Start(addr string, cfg Config, log *slog.Logger) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-listen %s: %w", addr, err)
	}
	s := &Server{lis: lis, log: log, srv: &http.Server{Handler: Handler(cfg), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http endpoint stopped", "err", err)
		}
	}()
	log.Info("http endpoint serving", "addr", lis.Addr().String(), "pprof", cfg.Pprof)
	return s, nil
}

// Addr is the address listened on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Close stops serving, letting requests in flight finish for a moment.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
