package fake

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The same rules as the libvirt driver, so code tested against the fake
// meets the same refusals on a real host.
var (
	idPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	imagePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

func validateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("instance id %q must match %s: %w", id, idPattern, hypervisor.ErrInvalidSpec)
	}
	return nil
}

func validateSpec(spec hypervisor.DomainSpec) error {
	if err := validateID(spec.ID); err != nil {
		return err
	}
	switch {
	case !imagePattern.MatchString(spec.Image) || strings.Contains(spec.Image, ".."):
		return fmt.Errorf("image name %q is not a plain image name: %w", spec.Image, hypervisor.ErrInvalidSpec)
	case spec.VCPUs < 1 || spec.VCPUs > 64:
		return fmt.Errorf("vcpus %d not in 1..64: %w", spec.VCPUs, hypervisor.ErrInvalidSpec)
	case spec.MemoryMiB < 64 || spec.MemoryMiB > 262144:
		return fmt.Errorf("memory %d MiB not in 64..262144: %w", spec.MemoryMiB, hypervisor.ErrInvalidSpec)
	case spec.DiskGiB > 65536:
		return fmt.Errorf("disk %d GiB above 65536: %w", spec.DiskGiB, hypervisor.ErrInvalidSpec)
	case len(spec.Name) > 1024 || strings.IndexFunc(spec.Name, unicode.IsControl) >= 0:
		return fmt.Errorf("display name too long or has control characters: %w", hypervisor.ErrInvalidSpec)
	}
	return nil
}
