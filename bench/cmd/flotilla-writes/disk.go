package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-vm/flotilla/bench/writes"
)

// fsyncProbe times n serial 4 KiB appends + fdatasync in a temp file under
// dir: the floor under any fsync-per-commit system's latency.
func fsyncProbe(dir string, n int) (p50, p99 time.Duration, err error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return writes.Percentile(lat, 50), writes.Percentile(lat, 99), nil
}

// describeDisk names the filesystem and block device holding dir, e.g.
// "ext4 on /dev/vda (virtio-blk, rotational=1)".
func describeDisk(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown"
	}
	abs, _ = filepath.EvalSymlinks(abs)
	var src, fstype, best string
	if f, err := os.Open("/proc/mounts"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 3 {
				continue
			}
			mnt := fs[1]
			if (abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
				best, src, fstype = mnt, fs[0], fs[2]
			}
		}
		f.Close()
	}
	desc := fmt.Sprintf("%s on %s", fstype, src)
	var st syscall.Stat_t
	if syscall.Stat(abs, &st) != nil {
		return desc
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return desc
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
	}
	var attrs []string
	if b, err := os.ReadFile(filepath.Join(sys, "device", "vendor")); err == nil && strings.TrimSpace(string(b)) == "0x1af4" {
		attrs = append(attrs, "virtio-blk")
	} else if b, err := os.ReadFile(filepath.Join(sys, "device", "model")); err == nil {
		attrs = append(attrs, strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile(filepath.Join(sys, "queue", "rotational")); err == nil {
		attrs = append(attrs, "rotational="+strings.TrimSpace(string(b)))
	}
	if len(attrs) == 0 {
		return desc
	}
	return fmt.Sprintf("%s (%s)", desc, strings.Join(attrs, ", "))
}
