package raftstore

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger gives Raft a logger that writes through ours, so its lines
// have the daemon's format (--log-format) like every other. Raft's info
// chatter (heartbeats, elections) is kept at warn unless debug logging is
// on.
func newHCLogger(l *slog.Logger) hclog.Logger {
	level := hclog.Warn
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return &slogHC{log: l.With("component", "raft"), name: "raft", level: level}
}

// slogHC is an hclog.Logger that logs through slog.
type slogHC struct {
	log   *slog.Logger
	name  string
	level hclog.Level
	args  []any
}

var _ hclog.Logger = (*slogHC)(nil)

// slogLevel maps hclog's levels onto slog's; trace is below debug.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *slogHC) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < h.level {
		return
	}
	for i, a := range args {
		// hclog.Fmt("%+v", x) is a format, not a value: format it.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				args[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	h.log.Log(context.Background(), slogLevel(level), msg, args...)
}

func (h *slogHC) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHC) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHC) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHC) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHC) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *slogHC) IsTrace() bool { return h.level <= hclog.Trace }
func (h *slogHC) IsDebug() bool { return h.level <= hclog.Debug }
func (h *slogHC) IsInfo() bool  { return h.level <= hclog.Info }
func (h *slogHC) IsWarn() bool  { return h.level <= hclog.Warn }
func (h *slogHC) IsError() bool { return h.level <= hclog.Error }

func (h *slogHC) ImpliedArgs() []any { return h.args }

func (h *slogHC) With(args ...any) hclog.Logger {
	c := *h
	c.log = h.log.With(args...)
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *slogHC) Name() string { return h.name }

func (h *slogHC) Named(name string) hclog.Logger {
	c := *h
	c.name = h.name + "." + name
	c.log = h.log.With("logger", c.name)
	return &c
}

func (h *slogHC) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.log = h.log.With("logger", name)
	return &c
}

func (h *slogHC) SetLevel(level hclog.Level) { h.level = level }
func (h *slogHC) GetLevel() hclog.Level      { return h.level }

func (h *slogHC) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHC) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return lineWriter{h} }

// lineWriter logs each write (a line of a standard logger) at info.
type lineWriter struct{ h *slogHC }

func (w lineWriter) Write(p []byte) (int, error) {
	w.h.Info(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
