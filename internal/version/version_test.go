package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-07T17:00:00Z"}}
	for _, tc := range []struct {
		name   string
		bi     *debug.BuildInfo
		linked string
		want   Info
		short  string
	}{
		{"no build info", nil, "", Info{Version: "devel", Commit: "unknown", Date: "unknown"}, "devel"},
		{"devel without vcs", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}, "",
			Info{Version: "devel", Commit: "unknown", Date: "unknown", Go: "go1.26.0"}, "devel"},
		{"module version and vcs", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs}, "",
			Info{Version: "v1.2.3", Commit: "0123456789abcdef0123", Date: "2026-12-07T17:00:00Z", Go: "go1.26.0"}, "v1.2.3+0123456789ab"},
		{"pseudo-version from the commit", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.13.1-0.20261207174354-0123456789ab"}, Settings: vcs}, "",
			Info{Version: "v0.13.1-0.20261207174354-0123456789ab", Commit: "0123456789abcdef0123", Date: "2026-12-07T17:00:00Z", Go: "go1.26.0"}, "v0.13.1-0.20261207174354-0123456789ab"},
		{"linked version wins", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}}, "v2.0.0",
			Info{Version: "v2.0.0", Commit: "unknown", Date: "unknown", Go: "go1.26.0"}, "v2.0.0"},
		{"modified tree", &debug.BuildInfo{GoVersion: "go1.26.0", Settings: append(vcs, debug.BuildSetting{Key: "vcs.modified", Value: "true"})}, "",
			Info{Version: "devel", Commit: "0123456789abcdef0123", Date: "2026-12-07T17:00:00Z", Go: "go1.26.0", Modified: true}, "devel+0123456789ab.dirty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fromBuildInfo(tc.bi, tc.bi != nil, tc.linked)
			if tc.want.Go == "" {
				tc.want.Go = got.Go // the running toolchain's
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if s := got.Short(); s != tc.short {
				t.Fatalf("Short() = %q, want %q", s, tc.short)
			}
		})
	}
}

func TestString(t *testing.T) {
	s := Info{Version: "v1.2.3", Commit: "abc", Date: "2026-12-07T17:00:00Z", Go: "go1.26.0", Modified: true}.String("flotctl")
	for _, want := range []string{"flotctl v1.2.3\n", "commit: abc (modified)\n", "built: 2026-12-07T17:00:00Z\n", "go: go1.26.0\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
}
