package libvirt

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"strings"
)

// defaultDomainType is "kvm" where KVM can run an ordinary guest, else
// "qemu" (software emulation).
//
// /dev/kvm alone does not say so: a machine that is itself a guest can
// have /dev/kvm from a paravirtual KVM (kvm_pvm) that runs only guests
// built for it, and there an ordinary kernel hangs at its first
// instruction with no error from libvirt or QEMU. Hardware KVM on x86
// needs VT-x or AMD-V, which the CPU flags show (nested virtualization
// shows them too); elsewhere /dev/kvm is taken at its word.
func defaultDomainType() string {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "qemu"
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "386" {
		return "kvm"
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "qemu"
	}
	defer f.Close()
	if hasHardwareVirt(f) {
		return "kvm"
	}
	return "qemu"
}

// hasHardwareVirt reports whether an x86 /proc/cpuinfo lists the vmx
// (Intel VT-x) or svm (AMD-V) flag.
func hasHardwareVirt(cpuinfo io.Reader) bool {
	sc := bufio.NewScanner(cpuinfo)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20) // flags lines are long
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, flag := range strings.Fields(value) {
			if flag == "vmx" || flag == "svm" {
				return true
			}
		}
		return false // every CPU lists the same flags
	}
	return false
}
