package libvirt

import (
	"github.com/flotilla-vm/flotilla/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Integration tests run against the host's real libvirtd and the image built
// by scripts/build-test-guest.sh (after scripts/setup-host.sh).

const testImage = "flotilla-test"

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// requireHost skips the test when libvirtd or the test image is missing, or
// fails it under CI, where a missing host setup is a broken build.
func requireHost(t *testing.T) (socket, imageDir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("libvirt integration test: not run with -short")
	}
	socket = envOr("FLOTILLA_LIBVIRT_SOCKET", DefaultSocket)
	imageDir = envOr("FLOTILLA_IMAGE_DIR", DefaultImageDir)
	// Other packages' tests share this libvirtd (and one of them restarts
	// it): hold the lock before looking for its socket.
	testenv.LockLibvirt(t, false)
	var missing []string
	if st, err := os.Stat(socket); err != nil || st.Mode()&os.ModeSocket == 0 {
		missing = append(missing, "libvirtd socket "+socket+" (run scripts/setup-host.sh)")
	}
	if _, err := os.Stat(filepath.Join(imageDir, testImage, ".complete")); err != nil {
		missing = append(missing, "test image "+filepath.Join(imageDir, testImage)+" (run scripts/build-test-guest.sh)")
	}
	for _, tool := range []string{"virsh", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		msg := "libvirt integration test needs: " + strings.Join(missing, "; ")
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return socket, imageDir
}

// newTestDriver connects a driver with per-test disk and run directories.
func newTestDriver(t *testing.T) (*Driver, Config) {
	t.Helper()
	socket, imageDir := requireHost(t)
	// The run dir holds unix sockets (107-byte paths): t.TempDir is too long.
	runDir, err := os.MkdirTemp("/tmp", "flr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	cfg := Config{
		Socket:   socket,
		ImageDir: imageDir,
		DiskDir:  t.TempDir(),
		RunDir:   runDir,
		Logger:   slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d, d.cfg
}

// testID returns an instance id unique to this run, and removes the domain
// again when the test ends, whatever happened.
func testID(t *testing.T, d *Driver) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	id := "it-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		// Behind the driver's back too, in case the driver is broken.
		virsh(t, "destroy", domainName(id))
		virsh(t, "undefine", "--managed-save", "--nvram", domainName(id))
	})
	return id
}

func testSpec(id string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{ID: id, Name: "it <" + id + "> & 'co'", VCPUs: 1, MemoryMiB: 128, Image: testImage}
}

// virsh runs virsh against the system URI and returns its output; errors are
// returned in the output, since cleanup calls expect some to fail.
func virsh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...).CombinedOutput()
	return string(out), err
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func wantState(t *testing.T, d *Driver, id string, want hypervisor.PowerState) hypervisor.DomainStatus {
	t.Helper()
	st, err := d.Status(ctxT(t, 10*time.Second), id)
	if err != nil {
		t.Fatalf("Status(%s): %v", id, err)
	}
	if st.State != want {
		t.Fatalf("Status(%s) = %s (%s), want %s", id, st.State, st.Reason, want)
	}
	return st
}

func fileContains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}

// testWriter sends driver logs to the test log, and to stderr once the test
// is over (background goroutines may still log while the driver closes).
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return os.Stderr.Write(p)
	}
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
