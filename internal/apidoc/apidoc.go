// Package apidoc renders the public API's reference (docs/api.md) from the
// comments of proto/flotilla/v1: services and their methods, then messages
// and enums, each with its documentation. The proto files are parsed here
// (protocompile), so the reference needs no tool beyond Go; a test fails
// when docs/api.md no longer says what the protos do (make docs rewrites it).
package apidoc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Render returns the Markdown reference of every .proto file of the public
// API under protoRoot (the repository's proto/ directory).
func Render(protoRoot string) (string, error) {
	dir := filepath.Join(protoRoot, "flotilla", "v1")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".proto") {
			names = append(names, "flotilla/v1/"+e.Name())
		}
	}
	sort.Strings(names)
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{protoRoot}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := c.Compile(context.Background(), names...)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# API reference (flotilla.v1)\n\n")
	b.WriteString("Generated from the comments of `proto/flotilla/v1` by `make docs` (internal/apidoc); do not edit.\n")
	b.WriteString("Errors are gRPC status codes: INVALID_ARGUMENT names the field, FAILED_PRECONDITION the state and the allowed actions, NOT_FOUND the missing object.\n")
	for _, f := range files {
		svcs := f.Services()
		for i := 0; i < svcs.Len(); i++ {
			s := svcs.Get(i)
			fmt.Fprintf(&b, "\n## %s\n\n%s", s.FullName(), doc(s))
			ms := s.Methods()
			for j := 0; j < ms.Len(); j++ {
				m := ms.Get(j)
				in, out := string(m.Input().FullName()), string(m.Output().FullName())
				if m.IsStreamingServer() {
					out = "stream " + out
				}
				fmt.Fprintf(&b, "\n### %s\n\n`rpc %s(%s) returns (%s)`\n\n%s", m.Name(), m.Name(), in, out, doc(m))
			}
		}
	}
	b.WriteString("\n## Messages\n")
	for _, f := range files {
		msgs := f.Messages()
		for i := 0; i < msgs.Len(); i++ {
			message(&b, msgs.Get(i))
		}
	}
	b.WriteString("\n## Enums\n")
	for _, f := range files {
		enums := f.Enums()
		for i := 0; i < enums.Len(); i++ {
			enum(&b, enums.Get(i))
		}
		msgs := f.Messages()
		for i := 0; i < msgs.Len(); i++ {
			nestedEnums(&b, msgs.Get(i))
		}
	}
	return b.String(), nil
}

func message(b *strings.Builder, m protoreflect.MessageDescriptor) {
	fmt.Fprintf(b, "\n### %s\n\n%s", m.FullName(), doc(m))
	fs := m.Fields()
	if fs.Len() > 0 {
		b.WriteString("\n| field | type | description |\n|---|---|---|\n")
		for i := 0; i < fs.Len(); i++ {
			f := fs.Get(i)
			fmt.Fprintf(b, "| `%s` | %s | %s |\n", f.Name(), fieldType(f), cell(comment(f)))
		}
	}
	nested := m.Messages()
	for i := 0; i < nested.Len(); i++ {
		if !nested.Get(i).IsMapEntry() {
			message(b, nested.Get(i))
		}
	}
}

func nestedEnums(b *strings.Builder, m protoreflect.MessageDescriptor) {
	es := m.Enums()
	for i := 0; i < es.Len(); i++ {
		enum(b, es.Get(i))
	}
	ms := m.Messages()
	for i := 0; i < ms.Len(); i++ {
		nestedEnums(b, ms.Get(i))
	}
}

func enum(b *strings.Builder, e protoreflect.EnumDescriptor) {
	fmt.Fprintf(b, "\n### %s\n\n%s\n| value | number | description |\n|---|---|---|\n", e.FullName(), doc(e))
	vs := e.Values()
	for i := 0; i < vs.Len(); i++ {
		v := vs.Get(i)
		fmt.Fprintf(b, "| `%s` | %d | %s |\n", v.Name(), v.Number(), cell(comment(v)))
	}
}

func fieldType(f protoreflect.FieldDescriptor) string {
	var t string
	switch {
	case f.IsMap():
		return fmt.Sprintf("map<%s, %s>", fieldType(f.MapKey()), fieldType(f.MapValue()))
	case f.Message() != nil:
		t = "`" + string(f.Message().FullName()) + "`"
	case f.Enum() != nil:
		t = "`" + string(f.Enum().FullName()) + "`"
	default:
		t = f.Kind().String()
	}
	if f.IsList() {
		t = "repeated " + t
	}
	return t
}

// comment is a declaration's leading comment, trimmed.
func comment(d protoreflect.Descriptor) string {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(loc.LeadingComments), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// doc is a comment as a Markdown paragraph (empty if none).
func doc(d protoreflect.Descriptor) string {
	c := comment(d)
	if c == "" {
		return ""
	}
	return strings.Join(strings.Fields(c), " ") + "\n"
}

// cell is a comment fit for one table cell.
func cell(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "|", "\\|")
}
