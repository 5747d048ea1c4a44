package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Configuration: every setting is a flag; a YAML file (--config) and the
// environment may set it too. Flags win over the environment, which wins
// over the file, which wins over the defaults. A file's keys are the flags'
// names (a repeatable flag takes a list); the environment's names are the
// prefix and the flag's name in upper case with '_' for '-', e.g.
// FLOTILLA_AGENT_HOST_ID. An unknown key or a bad value stops the daemon
// at start-up with a message naming the setting and where it came from.

// notSettings are the flags no file or environment sets.
var notSettings = map[string]bool{"config": true, "print-config": true, "version": true, "help": true, "h": true}

// Configure parses args into fs (whose flags are all declared, Register's
// included) after applying the file that --config names (on the command
// line, or in the environment as <envPrefix>CONFIG) and the environment.
func Configure(fs *flag.FlagSet, envPrefix string, args []string) error {
	path := configPath(args)
	if path == "" {
		path = os.Getenv(envPrefix + "CONFIG")
	}
	if path != "" {
		if err := applyFile(fs, path); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if notSettings[f.Name] {
			return
		}
		name := EnvName(envPrefix, f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", name, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return fs.Parse(args)
}

// EnvName is the environment variable of flag name.
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// configPath finds --config's value on a command line not parsed yet.
func configPath(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func applyFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fs.Lookup(k) == nil || notSettings[k] {
			return fmt.Errorf("config file %s: unknown setting %q", path, k)
		}
		n := doc[k]
		var vals []string
		switch n.Kind {
		case yaml.ScalarNode:
			vals = []string{n.Value}
		case yaml.SequenceNode:
			if _, ok := fs.Lookup(k).Value.(Repeated); !ok {
				return fmt.Errorf("config file %s: setting %q takes one value, not a list", path, k)
			}
			for _, item := range n.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("config file %s: setting %q: a list of plain values is expected", path, k)
				}
				vals = append(vals, item.Value)
			}
		default:
			return fmt.Errorf("config file %s: setting %q: a value or a list of values is expected", path, k)
		}
		for _, v := range vals {
			if err := fs.Set(k, v); err != nil {
				return fmt.Errorf("config file %s: setting %q: value %q: %w", path, k, v, err)
			}
		}
	}
	return nil
}

// Repeated is a repeatable flag's value: each setting as the flag takes it.
type Repeated interface {
	Settings() []string
}

// PrintConfig writes the effective settings as a configuration file would
// hold them (one Configure reads back to the same).
func PrintConfig(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if notSettings[f.Name] {
			return
		}
		var v any = f.Value.String()
		if r, ok := f.Value.(Repeated); ok {
			v = r.Settings()
		}
		out, _ := yaml.Marshal(map[string]any{f.Name: v})
		w.Write(out)
	})
}

// SortedSettings is a map flag's settings, key=value in key order.
func SortedSettings[K ~string, V any](m map[K]V) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(out)
	return out
}

// CheckAddr refuses a flag's value that is not host:port.
func CheckAddr(flagName, v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return fmt.Errorf("--%s %q: want host:port: %w", flagName, v, err)
	}
	return nil
}

// CheckWritableDir makes dir if it is missing and refuses one this process
// cannot write, naming the flag: at start-up rather than at the first write.
func CheckWritableDir(flagName, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--%s %q: %w", flagName, dir, err)
	}
	f, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return fmt.Errorf("--%s %q is not writable: %w", flagName, dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
