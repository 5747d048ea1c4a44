package raftstore

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Raft's lines come out in the daemon's format, at the levels it keeps.
func TestHCLoggerWritesThroughSlog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level
		want  []string // messages logged, in order
	}{
		{"info: raft's warnings and errors only", slog.LevelInfo, []string{"a warning", "an error"}},
		{"debug: raft's debug too, not its trace", slog.LevelDebug, []string{"a debug line", "an info line", "a warning", "an error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			h := newHCLogger(slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: tc.level})))
			h.Trace("a trace line")
			h.Debug("a debug line")
			h.Info("an info line")
			h.Named("snapshot").Warn("a warning", "term", 2)
			h.Error("an error")
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("not JSON: %q", line)
				}
				if m["component"] != "raft" {
					t.Errorf("line %q: component %v", line, m["component"])
				}
				got = append(got, m["msg"].(string))
				if m["msg"] == "a warning" && (m["term"] != float64(2) || m["logger"] != "raft.snapshot") {
					t.Errorf("warning line %q", line)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("logged %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHCLogFormatsFmtArgs(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Warn("initial configuration", "servers", hclog.Fmt("%+v", []int{1, 2}))
	if !strings.Contains(buf.String(), `servers="[1 2]"`) {
		t.Fatalf("logged %q", buf.String())
	}
}
