// Package version is what a Flotilla binary says it is: its version, the
// commit and time it was built from, and the Go release that built it, read
// from the build information the Go toolchain embeds.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version, when set at link time (-ldflags "-X
// github.com/flotilla-vm/flotilla/internal/version.version=v1.2.3"), is
// the release a packager built; it wins over the module version.
var version string

// Info describes one build.
type Info struct {
	Version string // a release (v1.2.3) or "devel"
	Commit  string // vcs.revision, "unknown" when built without VCS stamping
	Date    string // vcs.time (the commit's time), "unknown" likewise
	Go      string // e.g. go1.26.0
	// Modified: the work tree had uncommitted changes (vcs.modified).
	Modified bool
}

// Get reads this binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(bi, ok, version)
}

// fromBuildInfo is Get for given build information (tests give their own).
func fromBuildInfo(bi *debug.BuildInfo, ok bool, linked string) Info {
	in := Info{Version: "devel", Commit: "unknown", Date: "unknown", Go: runtime.Version()}
	if !ok || bi == nil {
		if linked != "" {
			in.Version = linked
		}
		return in
	}
	if bi.GoVersion != "" {
		in.Go = bi.GoVersion
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		in.Version = v
	}
	if linked != "" {
		in.Version = linked
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.Date = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// Short is the version with the commit's first 12 characters when known,
// e.g. "devel+1a2b3c4d5e6f" (".dirty" added for a modified tree): what
// agents report to coordinators.
func (in Info) Short() string {
	if in.Commit == "unknown" {
		return in.Version
	}
	c := in.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	v := in.Version
	if !strings.HasSuffix(v, "-"+c) { // a pseudo-version names the commit already
		v += "+" + c
	}
	if in.Modified {
		v += ".dirty"
	}
	return v
}

// String is the --version output of the binary named prog.
func (in Info) String(prog string) string {
	commit := in.Commit
	if in.Modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("%s %s\ncommit: %s\nbuilt: %s\ngo: %s\n", prog, in.Version, commit, in.Date, in.Go)
}
