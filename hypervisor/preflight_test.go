package hypervisor

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckDiskRoom(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		free, need, reserve uint64
		ok                  bool
		msg                 string
	}{
		{free: 10 * gib, need: OverlayBytes, reserve: gib, ok: true},
		{free: gib + OverlayBytes, need: OverlayBytes, reserve: gib, ok: true}, // exactly enough
		{free: gib + OverlayBytes - 1, need: OverlayBytes, reserve: gib,
			msg: "disk directory /d has 1075838975 bytes (1.0 GiB) free, needs 1075838976 (1.0 GiB): 2097152 for the disk now + 1073741824 reserve: insufficient disk space"},
		{free: 0, need: 0, reserve: 0, ok: true},
		{free: 512, need: 1000, reserve: 0, msg: "disk directory /d has 512 bytes (512 B) free, needs 1000 (1000 B): 1000 for the disk now + 0 reserve: insufficient disk space"},
		// A reserve beyond any disk does not wrap around to a small need.
		{free: 1 << 62, need: OverlayBytes, reserve: ^uint64(0), msg: "needs 18446744073709551615 (16.0 EiB)"},
	}
	for _, c := range cases {
		err := CheckDiskRoom("/d", c.free, c.need, c.reserve)
		if c.ok {
			if err != nil {
				t.Errorf("free %d need %d reserve %d: %v", c.free, c.need, c.reserve, err)
			}
			continue
		}
		if !errors.Is(err, ErrInsufficientDisk) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("free %d need %d reserve %d: got %v, want %q", c.free, c.need, c.reserve, err, c.msg)
		}
	}
}
