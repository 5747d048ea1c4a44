package libvirt

import (
	"strings"
	"testing"
)

func TestHasHardwareVirt(t *testing.T) {
	for _, tc := range []struct {
		name, cpuinfo string
		want          bool
	}{
		{"intel", "processor\t: 0\nflags\t\t: fpu vme de pse msr vmx ssse3 sse4_1\n", true},
		{"amd", "processor\t: 0\nflags\t\t: fpu svm lahf_lm\n", true},
		// A guest with a paravirtual /dev/kvm: no VT-x flag.
		{"pvm guest", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu pni hypervisor\nvmx flags\t: none\n", false},
		{"flag inside a word", "flags\t\t: vmxx nosvm\n", false},
		{"no flags line", "processor\t: 0\n", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hasHardwareVirt(strings.NewReader(tc.cpuinfo)); got != tc.want {
				t.Errorf("hasHardwareVirt = %v, want %v", got, tc.want)
			}
		})
	}
}
