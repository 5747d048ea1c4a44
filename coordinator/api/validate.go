package api

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/ipam"
	"github.com/flotilla-vm/flotilla/coordinator/labels"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	"github.com/flotilla-vm/flotilla/hypervisor"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The identifier patterns are matched by hand, not by regexp: they are
// checked on every write, and the regexp engine was a visible part of a
// create's cost on the leader. validate_test.go checks each against the
// regular expression in its comment.
var (
	namePat      = pattern{first: lowerDigit, rest: lowerDigitDash, last: lowerDigit, max: 63}       // ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$
	imagePat     = pattern{first: alnum, rest: alnumDotUnderDash, last: alnumDotUnderDash, max: 128} // ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$
	requestIDPat = pattern{first: requestChar, rest: requestChar, last: requestChar, max: 128}       // ^[A-Za-z0-9._:-]{1,128}$
	idPat        = pattern{first: lowerDigit, rest: lowerDigitDash, last: lowerDigitDash, max: 63}   // ^[a-z0-9][a-z0-9-]{0,62}$
)

// pattern matches strings of 1 to max bytes whose first, middle and last
// bytes are each in their own set (a one-byte string must be in first and last).
type pattern struct {
	first, rest, last func(byte) bool
	max               int
}

// MatchString reports whether s matches p.
func (p pattern) MatchString(s string) bool {
	n := len(s)
	if n == 0 || n > p.max || !p.first(s[0]) || !p.last(s[n-1]) {
		return false
	}
	for i := 1; i < n-1; i++ {
		if !p.rest(s[i]) {
			return false
		}
	}
	return true
}

func lowerDigit(c byte) bool        { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
func lowerDigitDash(c byte) bool    { return lowerDigit(c) || c == '-' }
func alnum(c byte) bool             { return lowerDigit(c) || 'A' <= c && c <= 'Z' }
func alnumDotUnderDash(c byte) bool { return alnum(c) || c == '.' || c == '_' || c == '-' }
func requestChar(c byte) bool       { return alnumDotUnderDash(c) || c == ':' }

// violation is one bad field; a request's violations become one
// INVALID_ARGUMENT with a BadRequest detail.
type violation struct{ field, desc string }

type violations []violation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, violation{field, fmt.Sprintf(format, args...)})
}

func validateName(v *violations, name string) {
	if !namePat.MatchString(name) {
		v.add("name", "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit")
	}
}

func validateRecovery(v *violations, rc *pb.Recovery) {
	if rc == nil {
		return
	}
	if _, ok := pb.RecoveryPolicy_name[int32(rc.Policy)]; !ok {
		v.add("recovery.policy", "unknown policy %d", rc.Policy)
	}
	if rc.MaxRestarts < 0 || rc.MaxRestarts > 100 {
		v.add("recovery.max_restarts", "must be 0..100, got %d", rc.MaxRestarts)
	}
}

// validateLabels bounds an instance's labels (package labels), so no
// record can make every list of instances huge.
func validateLabels(v *violations, m map[string]string) {
	if err := labels.Check(m); err != nil {
		v.add("labels", "%v", err)
	}
}

// updateFields are the fields UpdateInstance can change.
var updateFields = []string{"name", "labels", "recovery"}

// validateUpdate checks the fields to change (the id and request id are
// checked as for every action).
func validateUpdate(r *pb.UpdateInstanceRequest) violations {
	var v violations
	paths := r.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		v.add("update_mask", "is required: name any of %s", strings.Join(updateFields, ", "))
	}
	for _, p := range paths {
		switch p {
		case "name":
			validateName(&v, r.GetName())
		case "labels":
			validateLabels(&v, r.GetLabels())
		case "recovery":
			validateRecovery(&v, r.GetRecovery())
		default:
			v.add("update_mask", "%q cannot be updated (only %s)", p, strings.Join(updateFields, ", "))
		}
	}
	return v
}

// Limits of what a create gives the guest.
const (
	// A host refuses more (package hypervisor): the API refuses it first.
	maxInterfaces  = hypervisor.MaxNICs
	maxUserData    = hypervisor.MaxUserDataBytes
	maxSSHKeys     = hypervisor.MaxSSHKeys
	maxSSHKeyBytes = hypervisor.MaxSSHKeyBytes
	// maxReadinessTimeout bounds how long a guest may take to boot.
	maxReadinessTimeout = 24 * time.Hour
)

// validateGuest checks a create's interfaces, user data and SSH keys.
func validateGuest(v *violations, r *pb.CreateInstanceRequest) {
	if n := len(r.GetInterfaces()); n > maxInterfaces {
		v.add("interfaces", "at most %d, got %d", maxInterfaces, n)
	}
	for k, nic := range r.GetInterfaces() {
		if err := ipam.ValidateName(nic.GetNetwork()); err != nil {
			v.add(fmt.Sprintf("interfaces[%d].network", k), "%s", unwrapInvalid(err))
		}
		if a := nic.GetIpv4Address(); a != "" {
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
				v.add(fmt.Sprintf("interfaces[%d].ipv4_address", k), "%q is not an IPv4 address", a)
			}
		}
	}
	if d := r.GetReadinessTimeout(); d != nil && (!d.IsValid() || d.AsDuration() < 0 || d.AsDuration() > maxReadinessTimeout) {
		v.add("readiness_timeout", "must be 0s..%s (0s: never stranded)", maxReadinessTimeout)
	}
	if n := len(r.GetUserData()); n > maxUserData {
		v.add("user_data", "at most %d bytes, got %d", maxUserData, n)
	}
	if n := len(r.GetSshAuthorizedKeys()); n > maxSSHKeys {
		v.add("ssh_authorized_keys", "at most %d keys, got %d", maxSSHKeys, n)
	}
	for k, key := range r.GetSshAuthorizedKeys() {
		switch {
		case strings.TrimSpace(key) == "":
			v.add(fmt.Sprintf("ssh_authorized_keys[%d]", k), "is empty")
		case len(key) > maxSSHKeyBytes:
			v.add(fmt.Sprintf("ssh_authorized_keys[%d]", k), "longer than %d bytes", maxSSHKeyBytes)
		case strings.IndexFunc(key, unicode.IsControl) >= 0:
			v.add(fmt.Sprintf("ssh_authorized_keys[%d]", k), "must be one line without control characters")
		}
	}
}

func validateCreate(r *pb.CreateInstanceRequest) violations {
	var v violations
	validateName(&v, r.GetName())
	if p := r.GetProject(); p != "" && !namePat.MatchString(p) {
		v.add("project", "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit")
	}
	validateLabels(&v, r.GetLabels())
	validateGuest(&v, r)
	decommissionTimeout(&v, r.GetDecommissionTimeout())
	s := r.GetSpec()
	if s == nil {
		v.add("spec", "is required")
	} else {
		if s.Vcpus < 1 || s.Vcpus > 64 {
			v.add("spec.vcpus", "must be 1..64, got %d", s.Vcpus)
		}
		if s.MemoryMib < 64 || s.MemoryMib > 262144 {
			v.add("spec.memory_mib", "must be 64..262144, got %d", s.MemoryMib)
		}
		if s.DiskGib < 0 || s.DiskGib > 65536 {
			v.add("spec.disk_gib", "must be 0..65536, got %d", s.DiskGib)
		}
		if !imagePat.MatchString(s.Image) || strings.Contains(s.Image, "..") {
			v.add("spec.image", "must name an image in the image directory: letters, digits, '.', '_' and '-', no path separators or '..'")
		}
	}
	validateRequestID(&v, r.GetRequestId())
	validateRecovery(&v, r.GetRecovery())
	if p := r.GetPlacement(); p != nil {
		switch p.HypervisorKind {
		case "", "kvm", "qemu", "xen", "fake":
		default:
			v.add("placement.hypervisor_kind", "must be kvm, qemu, xen, fake or empty")
		}
		if err := labels.Check(p.HostLabels); err != nil {
			v.add("placement.host_labels", "%v", err)
		}
		if p.AntiAffinityGroup != "" && !namePat.MatchString(p.AntiAffinityGroup) {
			v.add("placement.anti_affinity_group", "must be 1-63 lowercase letters, digits or '-'")
		}
	}
	return v
}

func validateRequestID(v *violations, id string) {
	if id != "" && !requestIDPat.MatchString(id) {
		v.add("request_id", "must be 1-128 letters, digits, '.', '_', ':' or '-'")
	}
}

func validateID(v *violations, field, id string) {
	if id == "" {
		v.add(field, "is required")
	} else if !idPat.MatchString(id) {
		v.add(field, "is not a valid id")
	}
}

// stopGraceful checks and defaults the graceful timeout of a stop.
func stopGraceful(v *violations, r *pb.StopInstanceRequest) time.Duration {
	if r.GetGracefulTimeout() == nil {
		return lifecycle.DefaultGraceful
	}
	if err := r.GetGracefulTimeout().CheckValid(); err != nil {
		v.add("graceful_timeout", "%v", err)
		return 0
	}
	d := r.GetGracefulTimeout().AsDuration()
	if d < time.Second || d > time.Hour {
		v.add("graceful_timeout", "must be 1s..1h, got %s", d)
	}
	return d
}

// decommissionTimeout checks a stop's, delete's or create's decommission
// timeout: nil when the request gives none.
func decommissionTimeout(v *violations, d *durationpb.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	t := d.AsDuration()
	if !d.IsValid() || t < 0 || t > lifecycle.MaxDecommission {
		v.add("decommission_timeout", "must be 0s..%s (0s: no decommissioning)", lifecycle.MaxDecommission)
		return nil
	}
	return &t
}

// vocabulariesFromPB validates the vocabularies a read asks for, keeping
// their order and dropping repeats. A list longer than there are
// vocabularies is refused as a whole, so no request can make a huge error.
func vocabulariesFromPB(v *violations, in []pb.Vocabulary) []vocabulary.Vocabulary {
	if len(in) > len(vocabulary.All) {
		v.add("vocabularies", "at most %d, one per vocabulary", len(vocabulary.All))
		return nil
	}
	var out []vocabulary.Vocabulary
	for _, p := range in {
		k, ok := convert.VocabularyFromPB(p)
		if !ok {
			v.add("vocabularies", "unknown vocabulary %v", p)
			continue
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}
