package api

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/flotilla-vm/flotilla/coordinator/labels"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The hand-written patterns must accept exactly what the regular
// expressions in their comments accept.
func TestPatternsMatchTheirRegexps(t *testing.T) {
	cases := []struct {
		name string
		pat  pattern
		re   *regexp.Regexp
	}{
		{"name", namePat, regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)},
		{"image", imagePat, regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)},
		{"request id", requestIDPat, regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)},
		{"id", idPat, regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)},
	}
	// Strings over an alphabet holding every class boundary and a few
	// bytes no pattern allows, of every length around the limits.
	// Half the strings use only bytes some pattern allows, so that many match.
	alphabets := []string{"az09AZ-._:/ \n\x00\xffé", "az09AZ-._:"}
	fixed := []string{"", "a", "-", "a-", "-a", "a-b", "web-1", "i-3f9a", "flotilla-test", "img.qcow2", "x..y", "req:1", "A", "Z9",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a", 62) + "-"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		inputs := append([]string(nil), fixed...)
		for i := 0; i < 20000; i++ {
			n := rng.IntN(131)
			b := make([]byte, n)
			alphabet := alphabets[i%2]
			for j := range b {
				b[j] = alphabet[rng.IntN(len(alphabet))]
			}
			inputs = append(inputs, string(b))
		}
		for _, s := range inputs {
			if got, want := c.pat.MatchString(s), c.re.MatchString(s); got != want {
				t.Errorf("%s: %q: pattern says %v, regexp %v", c.name, s, got, want)
			}
		}
	}
}

func TestValidateUpdate(t *testing.T) {
	mask := func(p ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: p} }
	many := map[string]string{}
	for i := range labels.Max + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		r    *pb.UpdateInstanceRequest
		want string // "" = valid; else a field named in the violations
	}{
		{&pb.UpdateInstanceRequest{Name: "web-2", UpdateMask: mask("name")}, ""},
		{&pb.UpdateInstanceRequest{Labels: map[string]string{"team": "db"}, UpdateMask: mask("labels")}, ""},
		{&pb.UpdateInstanceRequest{UpdateMask: mask("labels")}, ""}, // clears them
		{&pb.UpdateInstanceRequest{Recovery: &pb.Recovery{Policy: pb.RecoveryPolicy_RECOVERY_POLICY_RESTART}, UpdateMask: mask("recovery")}, ""},
		{&pb.UpdateInstanceRequest{Name: "web-2"}, "update_mask"},
		{&pb.UpdateInstanceRequest{UpdateMask: mask("spec")}, "update_mask"},
		{&pb.UpdateInstanceRequest{Name: "Bad Name", UpdateMask: mask("name")}, "name"},
		{&pb.UpdateInstanceRequest{UpdateMask: mask("name")}, "name"},
		{&pb.UpdateInstanceRequest{Labels: map[string]string{"a b": "c"}, UpdateMask: mask("labels")}, "labels"},
		{&pb.UpdateInstanceRequest{Labels: many, UpdateMask: mask("labels")}, "labels"},
		{&pb.UpdateInstanceRequest{Recovery: &pb.Recovery{MaxRestarts: 101}, UpdateMask: mask("recovery")}, "recovery.max_restarts"},
	}
	for _, c := range cases {
		v := validateUpdate(c.r)
		if c.want == "" && len(v) > 0 {
			t.Errorf("%v: refused: %v", c.r, v)
		}
		if c.want != "" && (len(v) == 0 || v[0].field != c.want) {
			t.Errorf("%v: violations %v, want one for %s", c.r, v, c.want)
		}
	}
}

// A create whose placement asks for thousands of host labels is refused
// (two such creates made every ListInstances exceed the 4 MiB limit).
func TestPlacementLabelFloodRefused(t *testing.T) {
	flood := map[string]string{}
	for i := range 30000 {
		flood[fmt.Sprintf("k%d", i)] = "v"
	}
	r := &pb.CreateInstanceRequest{Name: "web", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "img"},
		Placement: &pb.Placement{HostLabels: flood}}
	v := validateCreate(r)
	if len(v) == 0 || v[0].field != "placement.host_labels" {
		t.Fatalf("violations %v, want one for placement.host_labels", v)
	}
	r.Placement.HostLabels = map[string]string{"rack": "r1"}
	if v := validateCreate(r); len(v) != 0 {
		t.Fatalf("a plain placement refused: %v", v)
	}
}
