package api

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	imageRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	idRE        = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// violation is one bad field; a request's violations become one
// INVALID_ARGUMENT with a BadRequest detail.
type violation struct{ field, desc string }

type violations []violation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, violation{field, fmt.Sprintf(format, args...)})
}

func validateCreate(r *pb.CreateInstanceRequest) violations {
	var v violations
	if !nameRE.MatchString(r.GetName()) {
		v.add("name", "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit")
	}
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
		if !imageRE.MatchString(s.Image) || strings.Contains(s.Image, "..") {
			v.add("spec.image", "must name an image in the image directory: letters, digits, '.', '_' and '-', no path separators or '..'")
		}
	}
	validateRequestID(&v, r.GetRequestId())
	if rc := r.GetRecovery(); rc != nil {
		if _, ok := pb.RecoveryPolicy_name[int32(rc.Policy)]; !ok {
			v.add("recovery.policy", "unknown policy %d", rc.Policy)
		}
		if rc.MaxRestarts < 0 || rc.MaxRestarts > 100 {
			v.add("recovery.max_restarts", "must be 0..100, got %d", rc.MaxRestarts)
		}
	}
	if p := r.GetPlacement(); p != nil {
		switch p.HypervisorKind {
		case "", "kvm", "qemu", "xen", "fake":
		default:
			v.add("placement.hypervisor_kind", "must be kvm, qemu, xen, fake or empty")
		}
		for k, val := range p.HostLabels {
			if !labelRE.MatchString(k) || !labelValueRE.MatchString(val) {
				v.add("placement.host_labels", "label %q=%q: keys and values are letters, digits, '.', '_', '/' and '-', at most 63 characters", k, val)
			}
		}
		if p.AntiAffinityGroup != "" && !nameRE.MatchString(p.AntiAffinityGroup) {
			v.add("placement.anti_affinity_group", "must be 1-63 lowercase letters, digits or '-'")
		}
	}
	return v
}

var (
	labelRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9._/-]{0,63}$`)
)

func validateRequestID(v *violations, id string) {
	if id != "" && !requestIDRE.MatchString(id) {
		v.add("request_id", "must be 1-128 letters, digits, '.', '_', ':' or '-'")
	}
}

func validateID(v *violations, field, id string) {
	if id == "" {
		v.add(field, "is required")
	} else if !idRE.MatchString(id) {
		v.add(field, "is not a valid id")
	}
}

// stopGraceful checks and defaults the graceful timeout of a stop.
func stopGraceful(v *violations, r *pb.StopInstanceRequest) time.Duration {
	if r.GetGracefulTimeout() == nil {
		return 10 * time.Minute // the manage-instance convention: 10 min, then destroy
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
