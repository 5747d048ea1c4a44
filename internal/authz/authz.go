// Package authz decides who may call which gRPC method: one table (Table)
// of method → roles, checked by one unary and one stream interceptor on
// every server a Flotilla process runs.
//
// A caller's roles are the Organizational Units of its verified client
// certificate that name a role (admin, operator, viewer, agent,
// coordinator); other OUs are ignored, so a certificate without any of
// them may call nothing. In plaintext (no TLS) nothing is verified and
// every caller holds every role: that mode is for loopback development
// clusters only (see coordinator/node and docs/security.md).
package authz

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// Role is what a certificate's OU lets its holder do.
type Role string

// The roles, as written in a certificate's OU.
const (
	Admin       Role = "admin"              // membership, snapshots, hosts, networks; and all an operator may
	Operator    Role = "operator"           // instances and operations; and all a viewer may
	Viewer      Role = "viewer"             // read only
	Agent       Role = mtls.RoleAgent       // its own host's stream, disk pulls
	Coordinator Role = mtls.RoleCoordinator // relay, joining, Raft
)

// Roles lists every role, in the table's column order.
var Roles = []Role{Admin, Operator, Viewer, Agent, Coordinator}

// Principal is an authenticated caller as the table sees it.
type Principal struct {
	Name  string // certificate CN ("" in plaintext)
	Roles []Role
	// Projects are the projects the certificate's OUs name ("project:NAME").
	Projects []string
	// Verified is false in plaintext, where Roles is every role.
	Verified bool
}

// Has reports whether p holds r.
func (p Principal) Has(r Role) bool { return slices.Contains(p.Roles, r) }

// RolesOf keeps the OUs that name a role.
func RolesOf(ous []string) []Role {
	var out []Role
	for _, ou := range ous {
		if r := Role(ou); slices.Contains(Roles, r) && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// ProjectOU is the prefix of an OU that names a project its holder works in.
const ProjectOU = "project:"

// DefaultProject is the project of a certificate that names none.
const DefaultProject = "default"

// ProjectsOf keeps the project names of the OUs that name one.
func ProjectsOf(ous []string) []string {
	var out []string
	for _, ou := range ous {
		if name, ok := strings.CutPrefix(ou, ProjectOU); ok && name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Sees reports whether p may see and act on what belongs to project: an
// admin (and, in plaintext, anyone) every project; others the projects
// their certificate names, or the default project if it names none.
func (p Principal) Sees(project string) bool {
	if !p.Verified || p.Has(Admin) {
		return true
	}
	if len(p.Projects) == 0 {
		return project == DefaultProject
	}
	return slices.Contains(p.Projects, project)
}

// Plaintext is the principal of every caller when the server has no TLS.
func Plaintext() Principal { return Principal{Roles: slices.Clone(Roles)} }

// Allowed reports whether p may call method.
func Allowed(p Principal, method string) bool {
	for _, r := range Table[method] {
		if p.Has(r) {
			return true
		}
	}
	return false
}

// Identify returns the principal a call comes from.
type Identify func(ctx context.Context) Principal

// PeerPrincipal is the principal of the connection itself: its verified
// certificate, or Plaintext.
func PeerPrincipal(ctx context.Context) Principal {
	id, ok := mtls.PeerIdentity(ctx)
	if !ok {
		return Plaintext()
	}
	return Principal{Name: id.Name, Roles: RolesOf(id.Roles), Projects: ProjectsOf(id.Roles), Verified: true}
}

type principalKey struct{}

// FromContext is the principal the interceptor admitted the call as.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Check returns the context to run the call in, or PermissionDenied.
func Check(ctx context.Context, identify Identify, method string) (context.Context, error) {
	p := identify(ctx)
	if !Allowed(p, method) {
		return nil, status.Errorf(codes.PermissionDenied, "authz: %q with roles %v may not call %s (allowed: %v)",
			p.Name, p.Roles, method, Table[method])
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// Unary checks every unary call against the table.
func Unary(identify Identify) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := Check(ctx, identify, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// Stream checks every streaming call against the table.
func Stream(identify Identify) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := Check(ss.Context(), identify, info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, wrapped{ServerStream: ss, ctx: ctx})
	}
}

type wrapped struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrapped) Context() context.Context { return w.ctx }

// Markdown renders Table as the role table of docs/security.md.
func Markdown() string {
	methods := make([]string, 0, len(Table))
	for m := range Table {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	var b strings.Builder
	b.WriteString("| method |")
	for _, r := range Roles {
		fmt.Fprintf(&b, " %s |", r)
	}
	b.WriteString("\n|---|")
	for range Roles {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, m := range methods {
		fmt.Fprintf(&b, "| `%s` |", strings.TrimPrefix(m, "/"))
		for _, r := range Roles {
			if slices.Contains(Table[m], r) {
				b.WriteString(" ✓ |")
			} else {
				b.WriteString("   |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
