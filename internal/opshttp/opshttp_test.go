package opshttp

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "things"})
	c.Add(3)
	reg.MustRegister(c)
	var notReady error
	for _, tc := range []struct {
		name     string
		pprof    bool
		ready    error
		path     string
		code     int
		contains string
	}{
		{"metrics", false, nil, "/metrics", 200, "test_things_total 3"},
		{"healthz", false, nil, "/healthz", 200, "ok"},
		{"healthz while not ready", false, errors.New("no leader"), "/healthz", 200, "ok"},
		{"ready", false, nil, "/readyz", 200, "ready"},
		{"not ready", false, errors.New("no known raft leader"), "/readyz", 503, "not ready: no known raft leader\n"},
		{"pprof off", false, nil, "/debug/pprof/", 404, ""},
		{"pprof on", true, nil, "/debug/pprof/", 200, "goroutine"},
		{"unknown path", false, nil, "/nothing", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notReady = tc.ready
			srv := httptest.NewServer(Handler(Config{Gatherer: reg, Ready: func() error { return notReady }, Pprof: tc.pprof}))
			defer srv.Close()
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("GET %s: %d, want %d (%s)", tc.path, resp.StatusCode, tc.code, body)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Fatalf("GET %s: %q lacks %q", tc.path, body, tc.contains)
			}
		})
	}
}
