package opstest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get fetches http://addr+path and returns the status code and body (code
// 0 when the daemon does not answer).
func get(addr, path string) (int, string) {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parse reads the samples of a /metrics body.
func parse(t *testing.T, body string) []sample {
	t.Helper()
	var out []sample
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		s := sample{name: line[:sp], labels: map[string]string{}, value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			for _, kv := range splitLabels(s.name[i+1 : len(s.name)-1]) {
				k, v, _ := strings.Cut(kv, "=")
				s.labels[k] = strings.Trim(v, `"`)
			}
			s.name = s.name[:i]
		}
		out = append(out, s)
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas between labels.
func splitLabels(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			if i == 0 || s[i-1] != '\\' {
				quoted = !quoted
			}
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// metrics is one scrape.
type metrics []sample

func scrape(t *testing.T, addr string) metrics {
	t.Helper()
	code, body := get(addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %s", addr, code, body)
	}
	return metrics(parse(t, body))
}

// value is the sum of the samples of name whose labels include labels
// ("k=v" pairs), and whether there was any.
func (m metrics) value(name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
outer:
	for _, s := range m {
		if s.name != name {
			continue
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if s.labels[k] != v {
				continue outer
			}
		}
		sum += s.value
		found = true
	}
	return sum, found
}

// expect is one metric a test wants, with its value.
type expect struct {
	name   string
	labels []string
	value  float64
}

func (e expect) String() string {
	return fmt.Sprintf("%s{%s} = %v", e.name, strings.Join(e.labels, ","), e.value)
}

// missing lists the expectations m does not meet.
func (m metrics) missing(want []expect) []string {
	var out []string
	for _, e := range want {
		if v, ok := m.value(e.name, e.labels...); !ok || v != e.value {
			out = append(out, fmt.Sprintf("%s (got %v, present %v)", e, v, ok))
		}
	}
	return out
}
