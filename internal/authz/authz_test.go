package authz

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var update = flag.Bool("update", false, "rewrite the role table in docs/security.md")

const (
	docPath  = "../../docs/security.md"
	docBegin = "<!-- role table: generated from internal/authz.Table (go test ./internal/authz -update) -->\n"
	docEnd   = "<!-- end of role table -->"
)

// docs/security.md shows the table the code checks.
func TestDocMatchesTable(t *testing.T) {
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, docBegin), strings.Index(doc, docEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no role table between %q and %q", docPath, docBegin, docEnd)
	}
	want := doc[:i+len(docBegin)] + Markdown() + doc[j:]
	if want == doc {
		return
	}
	if *update {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the role table in %s is not authz.Table's: run go test ./internal/authz -update", docPath)
}

func TestRolesOf(t *testing.T) {
	cases := []struct {
		ous  []string
		want []Role
	}{
		{nil, nil},
		{[]string{"ops"}, nil},
		{[]string{"viewer", "ops", "viewer"}, []Role{Viewer}},
		{[]string{"operator", "admin"}, []Role{Operator, Admin}},
		{[]string{"Admin"}, nil}, // exact, as written by scripts/issue-certs.sh
	}
	for _, c := range cases {
		got := RolesOf(c.ous)
		if len(got) != len(c.want) {
			t.Errorf("RolesOf(%v) = %v, want %v", c.ous, got, c.want)
			continue
		}
		for k := range got {
			if got[k] != c.want[k] {
				t.Errorf("RolesOf(%v) = %v, want %v", c.ous, got, c.want)
			}
		}
	}
}

// The interceptor refuses a method the table does not name, to everyone.
func TestUnknownMethodRefused(t *testing.T) {
	ic := Unary(func(context.Context) Principal { return Plaintext() })
	_, err := ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"}, func(context.Context, any) (any, error) { return nil, nil })
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v", err)
	}
	ic = Unary(func(context.Context) Principal { return Principal{Name: "v", Roles: []Role{Viewer}, Verified: true} })
	var seen Principal
	_, err = ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/flotilla.v1.HostService/ListHosts"}, func(ctx context.Context, _ any) (any, error) {
		seen, _ = FromContext(ctx)
		return nil, nil
	})
	if err != nil || seen.Name != "v" {
		t.Fatalf("a viewer listing hosts: %v, principal %+v", err, seen)
	}
}
