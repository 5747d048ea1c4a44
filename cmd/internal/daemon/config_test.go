package daemon

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }
func (l *list) Settings() []string { return *l }

func newFlags() (*flag.FlagSet, *string, *string, *string, *list) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	var f Flags
	f.Register(fs)
	a := fs.String("alpha", "default-a", "")
	b := fs.String("beta-gamma", "default-b", "")
	c := fs.String("delta", "default-d", "")
	l := &list{}
	fs.Var(l, "label", "")
	fs.Duration("wait", 0, "")
	return fs, a, b, c, l
}

func writeFile(t *testing.T, text string) string {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Flags win over the environment, which wins over the file, which wins
// over the defaults; a repeatable flag takes a list.
func TestConfigurePrecedence(t *testing.T) {
	p := writeFile(t, "alpha: from-file\nbeta-gamma: from-file\nlabel: [a=1, b=2]\n")
	t.Setenv("T_BETA_GAMMA", "from-env")
	t.Setenv("T_DELTA", "from-env")
	fs, a, b, c, l := newFlags()
	if err := Configure(fs, "T_", []string{"--config", p, "--delta=from-flag"}); err != nil {
		t.Fatal(err)
	}
	if *a != "from-file" || *b != "from-env" || *c != "from-flag" || strings.Join(*l, ",") != "a=1,b=2" {
		t.Fatalf("alpha %q beta-gamma %q delta %q label %q", *a, *b, *c, *l)
	}
	// --print-config's output configures the same settings again.
	var out bytes.Buffer
	PrintConfig(&out, fs)
	fs2, a2, b2, c2, l2 := newFlags()
	os.Unsetenv("T_BETA_GAMMA")
	os.Unsetenv("T_DELTA")
	if err := Configure(fs2, "T_", []string{"--config=" + writeFile(t, out.String())}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if *a2 != *a || *b2 != *b || *c2 != *c || strings.Join(*l2, ",") != "a=1,b=2" {
		t.Fatalf("round trip: %q %q %q %q\n%s", *a2, *b2, *c2, *l2, out.String())
	}
}

// Bad settings are refused, naming the setting and where it came from.
func TestConfigureRefusals(t *testing.T) {
	for _, c := range []struct {
		name, file, env, want string
	}{
		{"unknown key", "alhpa: x\n", "", `unknown setting "alhpa"`},
		{"a list for one value", "alpha: [x, y]\n", "", `setting "alpha" takes one value`},
		{"a bad value", "wait: soon\n", "", `setting "wait": value "soon"`},
		{"a map", "alpha: {x: 1}\n", "", `setting "alpha": a value or a list`},
		{"not YAML", "alpha: [\n", "", "config file"},
		{"a bad environment value", "", "T_WAIT=soon", `environment T_WAIT="soon"`},
		{"config is not a setting", "config: other.yaml\n", "", `unknown setting "config"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs, _, _, _, _ := newFlags()
			var args []string
			if c.file != "" {
				args = []string{"--config", writeFile(t, c.file)}
			}
			if c.env != "" {
				k, v, _ := strings.Cut(c.env, "=")
				t.Setenv(k, v)
			}
			err := Configure(fs, "T_", args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	if err := Configure(func() *flag.FlagSet { fs, _, _, _, _ := newFlags(); return fs }(), "T_", []string{"--config", "/no/such/file"}); err == nil {
		t.Fatal("a missing config file was accepted")
	}
}

func TestChecks(t *testing.T) {
	if err := CheckAddr("listen", "nohost"); err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Errorf("CheckAddr: %v", err)
	}
	file := writeFile(t, "x")
	if err := CheckWritableDir("data-dir", filepath.Join(file, "sub")); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("CheckWritableDir: %v", err)
	}
	if err := CheckWritableDir("data-dir", filepath.Join(t.TempDir(), "new")); err != nil {
		t.Errorf("CheckWritableDir of a new dir: %v", err)
	}
}
