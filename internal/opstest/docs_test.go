package opstest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// metricName finds Flotilla's and gRPC's metric names in text.
var metricName = regexp.MustCompile(`\b(flotilla|grpc_server)_[a-z_]+\b`)

// baseName strips the series suffixes of histograms and summaries.
func baseName(s string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(s, suf); ok {
			return b
		}
	}
	return s
}

// observabilityDoc is docs/observability.md.
func observabilityDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// undocumented lists the metric names (base names) in names that the
// document's tables do not name in backquotes.
func undocumented(doc string, names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		b := baseName(n)
		if seen[b] {
			continue
		}
		seen[b] = true
		if !strings.Contains(doc, "`"+b+"`") {
			out = append(out, b)
		}
	}
	return out
}

// The Grafana dashboard is valid JSON and queries only documented metrics.
func TestDashboardUsesDocumentedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "grafana-flotilla.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana-flotilla.json: %v", err)
	}
	var used []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			used = append(used, metricName.FindAllString(tg.Expr, -1)...)
		}
	}
	if len(used) == 0 {
		t.Fatal("the dashboard queries no Flotilla metric")
	}
	if missing := undocumented(observabilityDoc(t), used); len(missing) > 0 {
		t.Errorf("the dashboard uses metrics docs/observability.md does not list: %v", missing)
	}
}
