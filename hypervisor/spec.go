package hypervisor

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Limits on a DomainSpec. Every driver refuses the same things, so code
// tested against the fake meets the same refusals on a real host; they also
// keep every value well inside libvirt's own types.
const (
	MinVCPUs     = 1
	MaxVCPUs     = 64
	MinMemoryMiB = 64
	MaxMemoryMiB = 262144
	MaxDiskGiB   = 65536
	MaxNameBytes = 1024
)

var (
	// IDPattern is what an instance id looks like; it becomes part of
	// domain names and file names, so nothing else is allowed.
	IDPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	imagePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// ValidateID checks an instance id.
func ValidateID(id string) error {
	if !IDPattern.MatchString(id) {
		return fmt.Errorf("instance id %q must match %s: %w", id, IDPattern, ErrInvalidSpec)
	}
	return nil
}

// ValidateImageName checks an image's name: it names a directory of the
// host's image directory, so nothing but a plain name is allowed.
func ValidateImageName(name string) error {
	if !imagePattern.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("image name %q is not a plain image name: %w", name, ErrInvalidSpec)
	}
	return nil
}

// ValidateSpec checks a DomainSpec; errors wrap ErrInvalidSpec.
func ValidateSpec(spec DomainSpec) error {
	if err := ValidateID(spec.ID); err != nil {
		return err
	}
	if err := ValidateImageName(spec.Image); err != nil {
		return err
	}
	if spec.VCPUs < MinVCPUs || spec.VCPUs > MaxVCPUs {
		return fmt.Errorf("vcpus %d not in %d..%d: %w", spec.VCPUs, MinVCPUs, MaxVCPUs, ErrInvalidSpec)
	}
	if spec.MemoryMiB < MinMemoryMiB || spec.MemoryMiB > MaxMemoryMiB {
		return fmt.Errorf("memory %d MiB not in %d..%d: %w", spec.MemoryMiB, MinMemoryMiB, MaxMemoryMiB, ErrInvalidSpec)
	}
	if spec.DiskGiB > MaxDiskGiB {
		return fmt.Errorf("disk %d GiB above %d: %w", spec.DiskGiB, MaxDiskGiB, ErrInvalidSpec)
	}
	if err := ValidateTitle(spec.Name); err != nil {
		return err
	}
	if err := validateNICs(spec.NICs); err != nil {
		return err
	}
	if spec.Seed != nil {
		if err := validateSeed(*spec.Seed); err != nil {
			return err
		}
	}
	return nil
}

// ValidateTitle checks a display name, which becomes the domain's title.
func ValidateTitle(name string) error {
	// libvirt refuses titles with newlines; other control characters have no
	// business in a display name either.
	if len(name) > MaxNameBytes {
		return fmt.Errorf("display name longer than %d bytes: %w", MaxNameBytes, ErrInvalidSpec)
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return fmt.Errorf("display name contains control characters: %w", ErrInvalidSpec)
	}
	return nil
}

// Equal reports whether two specs describe the same domain, field by field
// (the seed compared by value).
func (s DomainSpec) Equal(o DomainSpec) bool {
	if s.ID != o.ID || s.Name != o.Name || s.VCPUs != o.VCPUs || s.MemoryMiB != o.MemoryMiB ||
		s.DiskGiB != o.DiskGiB || s.Image != o.Image || !slices.Equal(s.NICs, o.NICs) || (s.Seed == nil) != (o.Seed == nil) {
		return false
	}
	return s.Seed == nil || s.Seed.Hostname == o.Seed.Hostname && s.Seed.UserData == o.Seed.UserData &&
		slices.Equal(s.Seed.SSHAuthorizedKeys, o.Seed.SSHAuthorizedKeys)
}
