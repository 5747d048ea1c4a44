package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// fileConfig is ~/.config/flotilla/flotctl.yaml. Every key is optional;
// unknown keys are refused so that a typo does not go unnoticed.
type fileConfig struct {
	// Coordinator is one address or a list, tried in turn.
	Coordinator stringList `yaml:"coordinator"`
	Timeout     string     `yaml:"timeout"`
	Output      string     `yaml:"output"`
	TLSCert     string     `yaml:"tls-cert"`
	TLSKey      string     `yaml:"tls-key"`
	TLSCA       string     `yaml:"tls-ca"`
}

// stringList reads "a:1,b:2", a YAML list, or one string.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		*l = items
		return nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = splitList(s)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// configPath is the config file to read and whether it was asked for by
// name (then it must exist).
func (c *cli) configPath(flagValue string) (string, bool) {
	if flagValue != "" {
		return flagValue, true
	}
	if p := c.getenv("FLOTILLA_CONFIG"); p != "" {
		return p, true
	}
	if d := c.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "flotilla", "flotctl.yaml"), false
	}
	if h := c.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "flotilla", "flotctl.yaml"), false
	}
	return "", false
}

func readConfig(path string, required bool) (fileConfig, error) {
	var fc fileConfig
	if path == "" {
		return fc, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return fc, nil
	}
	if err != nil {
		return fc, fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fc, fmt.Errorf("config file %s: %w (keys: coordinator, timeout, output, tls-cert, tls-key, tls-ca)", path, err)
	}
	return fc, nil
}

// settle resolves the global settings: a flag given on the line wins over
// the environment, which wins over the config file, which wins over the
// defaults.
func (c *cli) settle(cmd *cobra.Command) error {
	g := c.flags
	path, required := c.configPath(g.config)
	fc, err := readConfig(path, required)
	if err != nil {
		return &usageError{"", err.Error()}
	}
	// The root's own flags: a command's local flag of the same name (op
	// wait --timeout) shadows it and is that command's business.
	flags := cmd.Root().PersistentFlags()
	pick := func(flag, flagValue, env, file, def string) string {
		if f := flags.Lookup(flag); f != nil && f.Changed {
			return flagValue
		}
		if v := c.getenv(env); v != "" {
			return v
		}
		if file != "" {
			return file
		}
		return def
	}
	coord := pick("coordinator", g.coordinator, "FLOTILLA_COORDINATOR", strings.Join(fc.Coordinator, ","), "")
	if f := flags.Lookup("addr"); f != nil && f.Changed {
		coord = g.coordinator
	}
	if coord == "" {
		coord = c.getenv("FLOTILLA_ADDR") // the older name
	}
	if coord == "" {
		coord = defaultAddr
	}
	c.coordinators = splitList(coord)
	for _, a := range c.coordinators {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return &usageError{"", fmt.Sprintf("--coordinator %q: want host:port[,host:port...]", coord)}
		}
	}
	if len(c.coordinators) == 0 {
		return &usageError{"", "--coordinator must not be empty"}
	}
	timeout := pick("timeout", g.timeout, "FLOTILLA_TIMEOUT", fc.Timeout, defaultTimeout.String())
	if c.timeout, err = time.ParseDuration(timeout); err != nil || c.timeout <= 0 {
		return &usageError{"", fmt.Sprintf("--timeout must be a positive duration such as 30s, not %q", timeout)}
	}
	c.tls.Cert = pick("tls-cert", g.tlsCert, "FLOTILLA_TLS_CERT", fc.TLSCert, "")
	c.tls.Key = pick("tls-key", g.tlsKey, "FLOTILLA_TLS_KEY", fc.TLSKey, "")
	c.tls.CA = pick("tls-ca", g.tlsCA, "FLOTILLA_TLS_CA", fc.TLSCA, "")
	c.output = pick("output", g.output, "FLOTILLA_OUTPUT", fc.Output, "table")
	if c.out, err = parseOutput(c.output); err != nil {
		return &usageError{"", err.Error()}
	}
	return nil
}
