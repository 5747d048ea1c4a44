package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

// outFmt is a parsed -o: table, wide, json, yaml or jsonpath=EXPR.
type outFmt struct {
	name string
	path []pathTerm // for jsonpath
	// list: a document output wraps the rows as {"items": [...]} even
	// when there is one; otherwise one row is printed as itself.
	list bool
}

var (
	tableOut = outFmt{name: "table"}
	jsonOut  = outFmt{name: "json"}
)

func parseOutput(s string) (outFmt, error) {
	switch s {
	case "table", "wide", "json", "yaml":
		return outFmt{name: s}, nil
	}
	if expr, ok := strings.CutPrefix(s, "jsonpath="); ok {
		p, err := parseTemplate(expr)
		if err != nil {
			return outFmt{}, fmt.Errorf("-o jsonpath: %w", err)
		}
		return outFmt{name: "jsonpath", path: p}, nil
	}
	return outFmt{}, fmt.Errorf("-o must be table, wide, json, yaml or jsonpath=EXPR, not %q", s)
}

// document: the output is a JSON, YAML or jsonpath document rather than
// a table meant for people.
func (f outFmt) document() bool { return f.name != "table" && f.name != "wide" }

func (f outFmt) wide() bool { return f.name == "wide" }

// asList is f for a command that lists (list, op list, host list, ...).
func (f outFmt) asList() outFmt { f.list = true; return f }

// writeDoc prints msgs as one document: a list as {"items": [...]}, a
// single message as itself. JSON is indented; YAML is the same tree.
func writeDoc[M proto.Message](w io.Writer, f outFmt, msgs []M) error {
	var doc []byte
	if !f.list && len(msgs) == 1 {
		b, err := protojson.Marshal(msgs[0])
		if err != nil {
			return err
		}
		doc = b
	} else {
		items := make([]json.RawMessage, len(msgs))
		for i, m := range msgs {
			b, err := protojson.Marshal(m)
			if err != nil {
				return err
			}
			items[i] = b
		}
		b, err := json.Marshal(map[string]any{"items": items})
		if err != nil {
			return err
		}
		doc = b
	}
	return writeJSONDoc(w, f, doc)
}

// writeJSONDoc prints a JSON document in format f.
func writeJSONDoc(w io.Writer, f outFmt, doc []byte) error {
	switch f.name {
	case "yaml":
		y, err := jsonToYAML(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	case "jsonpath":
		var v any
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return err
		}
		s, err := evalTemplate(f.path, v)
		if err != nil {
			return &exitError{msg: fmt.Sprintf("-o jsonpath: %v", err)}
		}
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		_, err = io.WriteString(w, s)
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// writeLine prints one message of a stream (watch): compact JSON, one per
// line; YAML documents separated by "---"; jsonpath once per message.
func writeLine(w io.Writer, f outFmt, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	switch f.name {
	case "json":
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			return err
		}
		c.WriteByte('\n')
		_, err = w.Write(c.Bytes())
		return err
	case "yaml":
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
	}
	return writeJSONDoc(w, f, b)
}

// jsonToYAML turns JSON into block-style YAML, keeping the keys' order
// (JSON is YAML: decode it as YAML into nodes, then drop the flow style).
func jsonToYAML(doc []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, err
	}
	var unflow func(*yaml.Node)
	unflow = func(n *yaml.Node) {
		n.Style &^= yaml.FlowStyle
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			n.Style &^= yaml.DoubleQuotedStyle
		}
		for _, c := range n.Content {
			unflow(c)
		}
	}
	unflow(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// pathTerm is a piece of a jsonpath template: literal text, or an
// expression such as .items[0].id.
type pathTerm struct {
	text  string
	steps []pathStep // nil for text
}

// pathStep is one .field, [N] or [*].
type pathStep struct {
	field string
	index int
	all   bool // [*]
	isIdx bool
}

// parseTemplate reads a jsonpath template: text with {EXPR} in it, EXPR
// being .field, [N] and [*] steps (e.g. {.items[*].id}, {.status}). Text
// may use \n and \t. This is the part of kubectl's jsonpath that scripts
// use most; filters, ranges and recursive descent are not supported.
func parseTemplate(s string) ([]pathTerm, error) {
	var out []pathTerm
	for s != "" {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			out = append(out, pathTerm{text: unescapeText(s)})
			break
		}
		if open > 0 {
			out = append(out, pathTerm{text: unescapeText(s[:open])})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unclosed { in %q", s)
		}
		steps, err := parseExpr(s[open+1 : open+end])
		if err != nil {
			return nil, err
		}
		out = append(out, pathTerm{steps: steps})
		s = s[open+end+1:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty template; want e.g. {.items[0].id}")
	}
	return out, nil
}

func unescapeText(s string) string {
	return strings.NewReplacer(`\n`, "\n", `\t`, "\t").Replace(s)
}

func parseExpr(e string) ([]pathStep, error) {
	e = strings.TrimSpace(e)
	if e == "" || e == "." || e == "$" {
		return []pathStep{}, nil
	}
	e = strings.TrimPrefix(e, "$")
	var steps []pathStep
	for e != "" {
		switch e[0] {
		case '.':
			e = e[1:]
			n := strings.IndexAny(e, ".[")
			if n < 0 {
				n = len(e)
			}
			if n == 0 {
				return nil, fmt.Errorf("empty field name in {%s}", e)
			}
			steps = append(steps, pathStep{field: e[:n]})
			e = e[n:]
		case '[':
			end := strings.IndexByte(e, ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ in %q", e)
			}
			in := strings.TrimSpace(e[1:end])
			if in == "*" {
				steps = append(steps, pathStep{all: true, isIdx: true})
			} else if i, err := strconv.Atoi(in); err == nil {
				steps = append(steps, pathStep{index: i, isIdx: true})
			} else {
				return nil, fmt.Errorf("unsupported index [%s]: want [N] or [*]", in)
			}
			e = e[end+1:]
		default:
			return nil, fmt.Errorf("unexpected %q: an expression is .field, [N] or [*] steps", e)
		}
	}
	return steps, nil
}

// evalTemplate prints the template against v; an expression with several
// results ([*]) prints them separated by spaces.
func evalTemplate(terms []pathTerm, v any) (string, error) {
	var b strings.Builder
	for _, t := range terms {
		if t.steps == nil {
			b.WriteString(t.text)
			continue
		}
		vals, err := evalSteps(t.steps, []any{v})
		if err != nil {
			return "", err
		}
		for i, val := range vals {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(valueText(val))
		}
	}
	return b.String(), nil
}

func evalSteps(steps []pathStep, vals []any) ([]any, error) {
	for _, s := range steps {
		var next []any
		for _, v := range vals {
			switch {
			case s.isIdx:
				arr, ok := v.([]any)
				if !ok {
					return nil, fmt.Errorf("[%d] applied to a non-list", s.index)
				}
				if s.all {
					next = append(next, arr...)
					continue
				}
				i := s.index
				if i < 0 {
					i += len(arr)
				}
				if i < 0 || i >= len(arr) {
					return nil, fmt.Errorf("index [%d] out of range (%d items)", s.index, len(arr))
				}
				next = append(next, arr[i])
			default:
				obj, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf(".%s applied to a non-object", s.field)
				}
				if fv, ok := obj[s.field]; ok {
					next = append(next, fv)
				}
				// An absent field is an unset one (protojson omits zero values): nothing.
			}
		}
		vals = next
	}
	return vals, nil
}

// valueText prints a value found by a jsonpath; a string's control
// characters are escaped as in tables (it comes from the server).
func valueText(v any) string {
	switch v := v.(type) {
	case string:
		return escape(v)
	case json.Number:
		return v.String()
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}
