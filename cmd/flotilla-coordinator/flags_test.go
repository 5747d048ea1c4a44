package main

import (
	"flag"
	"io"
	"testing"

	"github.com/flotilla-vm/flotilla/cmd/internal/daemon"
)

// --log-json still works, as an alias of --log-format.
func TestLogJSONAlias(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		format     string
		deprecated bool
		fails      bool
	}{
		{nil, "json", false, false},
		{[]string{"--log-format=text"}, "text", false, false},
		{[]string{"--log-json"}, "json", true, false},
		{[]string{"--log-json=false"}, "text", true, false},
		{[]string{"--log-json", "--log-format=json"}, "json", true, false},
		{[]string{"--log-json", "--log-format=text"}, "", true, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		logJSON := fs.Bool("log-json", false, "")
		var f daemon.Flags
		f.Register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		deprecated, err := logJSONAlias(fs, *logJSON, &f)
		if (err != nil) != tc.fails || deprecated != tc.deprecated || !tc.fails && f.LogFormat != tc.format {
			t.Errorf("%q: format %q, deprecated %v, err %v; want %q, %v, fails %v", tc.args, f.LogFormat, deprecated, err, tc.format, tc.deprecated, tc.fails)
		}
	}
}
