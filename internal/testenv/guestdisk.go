package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Guest disk access for tests: QEMU's HMP command qemu-io, sent through
// libvirt (virsh qemu-monitor-command), reads and writes the disk a running
// guest sees from the host, through QEMU's own block layer: on a frozen
// disk a write lands in the top layer, as the guest's would. The test guest
// does not use its disk, so it does not notice.
//
// Two findings on libvirt 9.0 / QEMU 7.2: `qemu-io -d virtio-disk0` fails
// ("Device does not have a block device backend": that id is the PCI proxy
// device), the QOM path of the virtio-blk device behind it works; and
// qemu-io prints its results on QEMU's stdout, which libvirt sends to the
// domain's log (/var/log/libvirt/qemu/<domain>.log on the system URI), not
// to the monitor: GuestDiskHas reads the verdict there.

// guestDiskDevice is the QOM path of the domain's only disk device.
const guestDiskDevice = "/machine/peripheral/virtio-disk0/virtio-backend"

// domainLogDir is where the system libvirtd keeps each QEMU's stdout.
const domainLogDir = "/var/log/libvirt/qemu"

func qemuIO(uri, id, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), virshTimeout)
	defer cancel()
	out, err := Run(ctx, "virsh", "-q", "-c", uri, "qemu-monitor-command", "--hmp", "flotilla-"+id,
		fmt.Sprintf("qemu-io -d %s %q", guestDiskDevice, cmd))
	if err == nil && strings.TrimSpace(out) != "" {
		// The monitor only answers errors (the results go to the log).
		err = fmt.Errorf("qemu-io: %s", out)
	}
	return out, err
}

// GuestDiskWrite writes length bytes of pattern at off into the disk of the
// running instance id, on the libvirt at uri (e.g. "qemu:///system").
func GuestDiskWrite(t testing.TB, uri, id string, pattern byte, off, length int64) {
	t.Helper()
	if out, err := qemuIO(uri, id, fmt.Sprintf("write -P 0x%02x %d %d", pattern, off, length)); err != nil {
		t.Fatalf("writing pattern %#x at %d+%d into %s's disk: %v: %s", pattern, off, length, id, err, out)
	}
}

// GuestDiskHas reports whether the length bytes at off of the running
// instance's disk all hold pattern.
func GuestDiskHas(t testing.TB, uri, id string, pattern byte, off, length int64) bool {
	t.Helper()
	logPath := filepath.Join(domainLogDir, "flotilla-"+id+".log")
	st, err := os.Stat(logPath)
	if err != nil {
		t.Fatalf("reading %s's disk: domain log: %v", id, err)
	}
	from := st.Size()
	if out, err := qemuIO(uri, id, fmt.Sprintf("read -P 0x%02x %d %d", pattern, off, length)); err != nil {
		t.Fatalf("reading %s's disk: %v: %s", id, err, out)
	}
	done := fmt.Sprintf("read %d/%d bytes at offset %d", length, length, off)
	var added string
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(logPath)
		if err == nil && int64(len(b)) >= from {
			added = string(b[from:])
			if strings.Contains(added, done) {
				return !strings.Contains(added, "Pattern verification failed")
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("reading %s's disk: no %q in its log; got: %s", id, done, added)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// GuestDiskVerify fails the test unless the length bytes at off of the
// running instance's disk all hold pattern.
func GuestDiskVerify(t testing.TB, uri, id string, pattern byte, off, length int64) {
	t.Helper()
	if !GuestDiskHas(t, uri, id, pattern, off, length) {
		t.Fatalf("%s's disk does not hold pattern %#x at %d+%d", id, pattern, off, length)
	}
}

// GuestShape is what the test guest reports of itself on its console
// (FLOTILLA-GUEST-SHAPE lines, at boot and whenever its disk size changes).
type GuestShape struct {
	VCPUs     int
	MemKiB    int64
	DiskBytes int64
}

var shapeLine = regexp.MustCompile(`FLOTILLA-GUEST-SHAPE vcpus=(\d+) mem_kib=(\d+) disk_bytes=(\d+)`)

// LatestGuestShape returns the last shape line in the console log at path,
// and false when there is none yet.
func LatestGuestShape(path string) (GuestShape, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return GuestShape{}, false
	}
	m := shapeLine.FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		return GuestShape{}, false
	}
	last := m[len(m)-1]
	v, _ := strconv.Atoi(last[1])
	mem, _ := strconv.ParseInt(last[2], 10, 64)
	disk, _ := strconv.ParseInt(last[3], 10, 64)
	return GuestShape{VCPUs: v, MemKiB: mem, DiskBytes: disk}, true
}
