package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails the test under CI and skips it elsewhere.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("missing dependency (CI=true, so this is a failure): %s", what)
	}
	t.Skipf("missing dependency: %s", what)
}

// LibvirtSocket is the libvirtd socket the tests use.
const LibvirtSocket = "/var/run/libvirt/libvirt-sock"

// ImageDir is where the test guest image lives.
func ImageDir() string {
	if d := os.Getenv("FLOTILLA_IMAGE_DIR"); d != "" {
		return d
	}
	return "/var/lib/flotilla/images"
}

// RequireLibvirt checks for a running libvirtd, virsh and the test guest.
func RequireLibvirt(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: not run with -short")
	}
	var missing []string
	if _, err := os.Stat(LibvirtSocket); err != nil {
		missing = append(missing, "libvirtd socket "+LibvirtSocket+" (run scripts/setup-host.sh)")
	}
	if _, err := exec.LookPath("virsh"); err != nil {
		missing = append(missing, "virsh (run scripts/setup-host.sh)")
	}
	if _, err := os.Stat(filepath.Join(ImageDir(), "flotilla-test", ".complete")); err != nil {
		missing = append(missing, "test guest image (run scripts/build-test-guest.sh)")
	}
	if len(missing) > 0 {
		Missing(t, strings.Join(missing, "; "))
	}
}

// RepoRoot finds the module root from the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// GrpcurlPath returns the real grpcurl binary (built by scripts/install-tools.sh).
func GrpcurlPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), ".bin", "grpcurl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	Missing(t, fmt.Sprintf("grpcurl (run scripts/install-tools.sh)"))
	return ""
}
