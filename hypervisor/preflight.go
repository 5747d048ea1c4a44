package hypervisor

import "fmt"

// OverlayBytes bounds what a new qcow2 overlay takes on disk at once: its
// header, L1 table (1 MiB for the largest disk allowed, MaxDiskGiB) and
// first refcount blocks. A thin overlay grows only as the guest writes;
// the reserve a preflight keeps free is for that growth.
const OverlayBytes = 2 << 20

// CheckDiskRoom returns nil if free bytes in dir cover need (what the
// create writes at once) plus reserve (kept free for guests' disks to grow
// into), else an error wrapping ErrInsufficientDisk with every number.
func CheckDiskRoom(dir string, free, need, reserve uint64) error {
	total := need + reserve
	if total < need { // overflow: a reserve no disk could hold
		total = ^uint64(0)
	}
	if free >= total {
		return nil
	}
	return fmt.Errorf("disk directory %s has %d bytes (%s) free, needs %d (%s): %d for the disk now + %d reserve: %w",
		dir, free, humanBytes(free), total, humanBytes(total), need, reserve, ErrInsufficientDisk)
}

// humanBytes renders a size for people, in binary units, e.g. "1.5 GiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
