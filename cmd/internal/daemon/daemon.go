// Package daemon is the command line the Flotilla daemons share (the
// coordinator and the agent): logging, the HTTP operations endpoint and
// --version, with the same names, meanings and defaults in both.
package daemon

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/flotilla-vm/flotilla/internal/version"
)

// Flags are the shared settings.
type Flags struct {
	LogFormat  string // json or text
	LogLevel   string // debug, info, warn or error
	HTTPListen string // host:port of the operations endpoint; empty: none
	Pprof      bool   // serve /debug/pprof/ on it
	Version    bool   // print the version and exit
	// Config is the YAML file of settings (see Configure); PrintConfig
	// prints the effective settings and exits.
	Config      string
	PrintConfig bool
}

// Defaults of the shared flags.
const (
	DefaultLogFormat = "json"
	DefaultLogLevel  = "info"
)

// Register declares the flags on fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.LogFormat, "log-format", DefaultLogFormat, "log format: json or text")
	fs.StringVar(&f.LogLevel, "log-level", DefaultLogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&f.HTTPListen, "http-listen", "", "host:port of the plain-HTTP operations endpoint (/metrics, /healthz, /readyz; /debug/pprof/ with --pprof); empty: none. It has no TLS: bind it to loopback or a management network")
	fs.BoolVar(&f.Pprof, "pprof", false, "also serve /debug/pprof/ on --http-listen")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	fs.StringVar(&f.Config, "config", "", "a YAML file of settings, keyed by flag name (flags, then the environment, win over it)")
	fs.BoolVar(&f.PrintConfig, "print-config", false, "print the effective settings as YAML and exit")
}

// Check validates the flags, naming the one that is wrong.
func (f *Flags) Check() error {
	if _, err := ParseLevel(f.LogLevel); err != nil {
		return err
	}
	if f.LogFormat != "json" && f.LogFormat != "text" {
		return fmt.Errorf("--log-format %q: want json or text", f.LogFormat)
	}
	if f.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(f.HTTPListen); err != nil {
			return fmt.Errorf("--http-listen %q: want host:port: %w", f.HTTPListen, err)
		}
	}
	if f.Pprof && f.HTTPListen == "" {
		return fmt.Errorf("--pprof needs --http-listen")
	}
	return nil
}

// ParseLevel reads a --log-level: one of the four names (not slog's
// offsets, such as "info+2").
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		if err := l.UnmarshalText([]byte(s)); err == nil {
			return l, nil
		}
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

// Logger is the daemon's logger, writing to w as the flags say. Call it
// after Check.
func (f *Flags) Logger(w io.Writer) *slog.Logger {
	level, err := ParseLevel(f.LogLevel)
	if err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if f.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// PrintVersion writes prog's --version output.
func PrintVersion(w io.Writer, prog string) {
	fmt.Fprint(w, version.Get().String(prog))
}
