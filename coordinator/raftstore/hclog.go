package raftstore

import (
	"context"
	"log/slog"
	"os"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger gives Raft an hclog logger at the level our slog logger is
// enabled for; Raft's info chatter (heartbeats, elections) is kept at warn
// unless debug logging is on.
func newHCLogger(l *slog.Logger) hclog.Logger {
	level := hclog.Warn
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: level, Output: os.Stderr})
}
