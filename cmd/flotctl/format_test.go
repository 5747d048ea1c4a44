package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// YAML is the JSON document's tree: parsed back it equals the JSON, and
// strings that look like numbers (int64 in proto JSON) stay strings.
func TestYAMLOutput(t *testing.T) {
	ops := []*flotillav1.Operation{{Id: "op-1", Revision: 12, Kind: flotillav1.OperationKind_OPERATION_KIND_STOP, Step: "true"}}
	var j, y bytes.Buffer
	if err := printOperations(&j, jsonOut.asList(), ops); err != nil {
		t.Fatal(err)
	}
	if err := printOperations(&y, outFmt{name: "yaml", list: true}, ops); err != nil {
		t.Fatal(err)
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal(j.Bytes(), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(y.Bytes(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	jb, _ := json.Marshal(fromJSON)
	yb, _ := json.Marshal(fromYAML)
	if string(jb) != string(yb) {
		t.Errorf("yaml\n%s\nis not the json\n%s", y.String(), j.String())
	}
	if !strings.HasPrefix(y.String(), "items:\n  - id: op-1\n") {
		t.Errorf("yaml is not in block style, keys in order:\n%s", y.String())
	}
}

func TestJSONPath(t *testing.T) {
	doc := `{"items":[{"id":"i-1","spec":{"vcpus":2},"labels":{"a":"b"}},{"id":"i-2","spec":{"vcpus":4},"evil":"\u001b[2J"}],"n":"7"}`
	tests := []struct{ expr, want, wantErr string }{
		{"{.items[0].id}", "i-1\n", ""},
		{"{.items[*].id}", "i-1 i-2\n", ""},
		{"{.items[-1].spec.vcpus}", "4\n", ""},
		{"{.items[0].labels}", `{"a":"b"}` + "\n", ""},
		{`id={.items[1].id}\n`, "id=i-2\n", ""},
		{"{.items[1].labels.a}", "\n", ""}, // absent: unset, nothing
		{"{$.n}", "7\n", ""},
		{"{.items[1].evil}", `\x1b[2J` + "\n", ""},
		{"{.items[5].id}", "", "out of range"},
		{"{.n[0]}", "", "non-list"},
	}
	for _, tt := range tests {
		f, err := parseOutput("jsonpath=" + tt.expr)
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		var b bytes.Buffer
		err = writeJSONDoc(&b, f, []byte(doc))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.expr, err, tt.wantErr)
			}
			continue
		}
		if err != nil || b.String() != tt.want {
			t.Errorf("%s = %q, %v; want %q", tt.expr, b.String(), err, tt.want)
		}
	}
	for _, bad := range []string{"jsonpath=", "jsonpath={.a", "jsonpath={.a[x]}", "jsonpath={a}"} {
		if _, err := parseOutput(bad); err == nil {
			t.Errorf("parseOutput(%q) accepted", bad)
		}
	}
}

// Strings from the server cannot drive the terminal.
func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"web-1", "web-1"},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"line\nfake", `line\x0afake`},
		{"tab\there", `tab\x09here`},
		{"del\x7f", `del\x7f`},
		{"c1\u009b", `c1\u{009b}`},
		{"bidi\u202e", `bidi\u{202e}`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"ünïcode ok", "ünïcode ok"},
	}
	for _, tt := range tests {
		if got := escape(tt.in); got != tt.want {
			t.Errorf("escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var b bytes.Buffer
	in := &flotillav1.Instance{Id: "i-1", Name: "evil\x1b]0;pwned\x07", HostId: "h1\r\nh2"}
	if err := printInstances(&b, tableOut, []*flotillav1.Instance{in}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\x07\r") || !strings.Contains(b.String(), `evil\x1b]0;pwned\x07`) || strings.Count(b.String(), "\n") != 2 {
		t.Errorf("table not escaped: %q", b.String())
	}
}
