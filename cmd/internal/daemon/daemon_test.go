package daemon

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string // a part of the error; "" for none
	}{
		{nil, ""},
		{[]string{"--log-format=text", "--log-level=debug"}, ""},
		{[]string{"--log-level=WARN"}, ""},
		{[]string{"--log-format=xml"}, "--log-format"},
		{[]string{"--log-level=loud"}, "--log-level"},
		{[]string{"--log-level=info+2"}, "--log-level"},
		{[]string{"--http-listen=127.0.0.1:9100", "--pprof"}, ""},
		{[]string{"--http-listen=nowhere"}, "--http-listen"},
		{[]string{"--pprof"}, "--pprof needs --http-listen"},
	} {
		var f Flags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.Register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		err := f.Check()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.err)
		}
	}
}

func TestLoggerDefaultsToJSONAtInfo(t *testing.T) {
	var f Flags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse(nil); err != nil || f.Check() != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log := f.Logger(&out)
	log.Debug("hidden")
	log.Info("shown", "instance", "i-1")
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", out.String())
	}
	if line["msg"] != "shown" || line["instance"] != "i-1" || line["level"] != slog.LevelInfo.String() {
		t.Fatalf("line %v", line)
	}
}

func TestPrintVersion(t *testing.T) {
	var out bytes.Buffer
	PrintVersion(&out, "flotilla-agent")
	if !strings.HasPrefix(out.String(), "flotilla-agent ") || !strings.Contains(out.String(), "\ngo: go") {
		t.Fatalf("%q", out.String())
	}
}
