package libvirt

import "io"

// ReceiveFile writes disk into a new file in dir exactly as ImportDomain
// and ReceiveDisk write a pulled disk (sparse, at most limit bytes, synced)
// and returns its path: for tools that measure the copy on its own
// (bench/cmd/flotilla-xfer-bench).
func ReceiveFile(dir, name string, disk io.Reader, limit uint64) (string, error) {
	path, _, _, err := receiveDisk(dir, name, disk, limit)
	return path, err
}
