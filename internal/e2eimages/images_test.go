package e2eimages

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

const guestImage = "flotilla-test"

// newImageName is a fresh image name, removed from the image directory
// with the test.
func newImageName(t *testing.T, prefix string) string {
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(testenv.ImageDir(), name)) })
	return name
}

// Bundle a stopped instance that has a known marker on its disk; an
// instance created from the bundle finds it there.
func TestBundleThenCreateFromIt(t *testing.T) {
	e := newEnv(t)
	src := e.create("bundle-src", guestImage, "flotilla-test: disk-marker=bundled-1\n")
	e.waitLine(src, "FLOTILLA-GUEST-DISK dev=vda marker=bundled-1 rescued=no", 1)
	e.stop(src)

	img := newImageName(t, "bundle")
	id := e.call("BundleInstance", map[string]any{"id": src, "image": img})
	if s := e.status(src); s != "STATUS_BUNDLING" && s != "STATUS_STOPPED" {
		t.Fatalf("while bundling: %s", s)
	}
	e.mustSucceed(e.waitOp(id))
	e.waitStatus(src, "STATUS_STOPPED", 10*time.Second)
	dir := filepath.Join(testenv.ImageDir(), img)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		t.Fatalf("bundled image: %v", err)
	}
	// Flattened (no backing file) and a qcow2 of its own.
	out, err := exec.Command("qemu-img", "info", "--output=json", filepath.Join(dir, "disk.qcow2")).CombinedOutput()
	if err != nil || strings.Contains(string(out), "backing-filename") || !strings.Contains(string(out), `"format": "qcow2"`) {
		t.Fatalf("bundled disk: %v %s", err, out)
	}
	// A bundle into an image that exists fails and leaves the instance as it was.
	op := e.do("BundleInstance", map[string]any{"id": src, "image": img})
	if testenv.Str(op, "state") == "OPERATION_STATE_SUCCEEDED" {
		t.Fatalf("a second bundle into %s succeeded", img)
	}
	e.waitStatus(src, "STATUS_STOPPED", 10*time.Second)

	dst := e.create("bundle-dst", img, "")
	e.waitLine(dst, "FLOTILLA-GUEST-DISK dev=vda marker=bundled-1 rescued=no", 1)
}

// Rescue boots the rescue system with the instance's disk second (it reads
// the marker through it and marks the disk); unrescue boots the instance
// from its own disk, with the mark; a rebuild gives it a fresh disk
// (the mark is gone) and keeps its id, name and host.
func TestRescueUnrescueRebuild(t *testing.T) {
	e := newEnv(t)
	id := e.create("rescue", guestImage, "flotilla-test: disk-marker=rescue-1\n")
	e.waitLine(id, "FLOTILLA-GUEST-DISK dev=vda marker=rescue-1 rescued=no", 1)
	before := e.instance(id)

	e.mustSucceed(e.do("RescueInstance", map[string]any{"id": id}))
	e.waitStatus(id, "STATUS_RESCUED", 10*time.Second)
	e.waitLine(id, "FLOTILLA-GUEST-RESCUE", 1)
	e.waitLine(id, "FLOTILLA-GUEST-DISK dev=vdb marker=rescue-1", 1)
	nova := e.g.MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id, "vocabularies": []string{"VOCABULARY_NOVA"}})
	if !strings.Contains(fmt.Sprint(nova), "RESCUED") {
		t.Errorf("Nova's word for a rescued instance: %v", nova)
	}
	// A rescued instance is not rescued again (nor rebuilt, nor bundled).
	if _, err := e.g.Call("flotilla.v1.InstanceService/RescueInstance", map[string]any{"id": id}); err == nil ||
		!strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), "unrescue") {
		t.Errorf("rescue of a rescued instance: %v", err)
	}

	e.mustSucceed(e.do("UnrescueInstance", map[string]any{"id": id}))
	e.waitStatus(id, "STATUS_RUNNING", 10*time.Second)
	e.waitLine(id, "FLOTILLA-GUEST-DISK dev=vda marker=rescue-1 rescued=yes", 1)

	e.mustSucceed(e.do("RebuildInstance", map[string]any{"id": id}))
	e.waitStatus(id, "STATUS_RUNNING", 10*time.Second)
	// The seed's switch writes the marker again on the fresh disk; the
	// rescue system's mark is gone with the old disk.
	e.waitLine(id, "FLOTILLA-GUEST-DISK dev=vda marker=rescue-1 rescued=no", 2)
	after := e.instance(id)
	for _, f := range []string{"id", "name", "hostId"} {
		if testenv.Str(before, f) != testenv.Str(after, f) {
			t.Errorf("%s changed by the rebuild: %q -> %q", f, testenv.Str(before, f), testenv.Str(after, f))
		}
	}
	if _, err := os.Stat(filepath.Join(e.agent.DiskDir, id+".original.qcow2")); err == nil {
		t.Error("the old disk is kept after a rebuild that booted")
	}
	if _, err := os.Stat(filepath.Join(e.agent.DiskDir, id+".rescue.qcow2")); err == nil {
		t.Error("the rescue disk is kept after the unrescue")
	}
}

// A rebuild from an image whose kernel does not boot puts the old disk back.
func TestRebuildFromBrokenImageRestoresTheOldDisk(t *testing.T) {
	e := newEnv(t)
	broken := newImageName(t, "broken")
	dir := filepath.Join(testenv.ImageDir(), broken)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(testenv.ImageDir(), guestImage)
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, "disk.qcow2"), "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	initrd, _ := os.ReadFile(filepath.Join(good, "initrd.img"))
	for f, b := range map[string][]byte{"vmlinuz": []byte("not a kernel"), "initrd.img": initrd, "cmdline": []byte("console=ttyS0"), ".complete": nil} {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	id := e.create("rebuild-broken", guestImage, "flotilla-test: disk-marker=keep-1\n")
	e.waitLine(id, "FLOTILLA-GUEST-DISK dev=vda marker=keep-1 rescued=no", 1)
	disk := filepath.Join(e.agent.DiskDir, id+".qcow2")
	st0, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}

	op := e.do("RebuildInstance", map[string]any{"id": id, "image": broken})
	if testenv.Str(op, "state") == "OPERATION_STATE_SUCCEEDED" {
		t.Fatalf("a rebuild from %s succeeded", broken)
	}
	e.waitStatus(id, "STATUS_RUNNING", 30*time.Second)
	inst := e.instance(id)
	if got := testenv.Str(inst, "spec", "image"); got != guestImage {
		t.Errorf("image after the rollback: %q", got)
	}
	st1, err := os.Stat(disk)
	if err != nil || !os.SameFile(st0, st1) {
		t.Errorf("the instance's disk is not the old one: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.agent.DiskDir, id+".original.qcow2")); err == nil {
		t.Error("an original is left behind")
	}
	e.waitLine(id, "FLOTILLA-GUEST-DISK dev=vda marker=keep-1 rescued=no", 2)
}

// An agent killed while a bundle runs: the bundle ends (done, or failed),
// the instance is stopped as it was, and no half-written image is left.
func TestAgentKilledMidBundle(t *testing.T) {
	e := newEnv(t)
	src := e.create("bundle-kill", guestImage, "flotilla-test: disk-marker=kill-1\n")
	e.waitLine(src, "FLOTILLA-GUEST-DISK dev=vda marker=kill-1 rescued=no", 1)
	e.stop(src)
	img := newImageName(t, "killed")
	id := e.call("BundleInstance", map[string]any{"id": src, "image": img})
	e.agent.Kill()
	e.agent.Restart()
	op := e.waitOp(id)
	e.waitStatus(src, "STATUS_STOPPED", 60*time.Second)
	left, _ := filepath.Glob(filepath.Join(testenv.ImageDir(), ".bundle-"+src+".*"))
	if len(left) > 0 {
		t.Errorf("half-written images left: %v", left)
	}
	_, err := os.Stat(filepath.Join(testenv.ImageDir(), img, ".complete"))
	switch state := testenv.Str(op, "state"); state {
	case "OPERATION_STATE_SUCCEEDED":
		if err != nil {
			t.Errorf("bundle succeeded, image missing: %v", err)
		}
	default:
		t.Logf("bundle ended %s: %s", state, testenv.Str(op, "error"))
		// A failed bundle may have finished its image before the kill
		// (its agent could not say): then it is whole.
		if err == nil {
			if _, err := os.Stat(filepath.Join(testenv.ImageDir(), img, "disk.qcow2")); err != nil {
				t.Errorf("bundled image without its disk: %v", err)
			}
		}
	}
}
