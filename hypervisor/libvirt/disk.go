package libvirt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// qemuImg is the qemu-img binary; a variable so tests can point elsewhere.
var qemuImg = "qemu-img"

// createOverlay makes the instance's copy-on-write disk over the image's
// disk. sizeGiB 0 keeps the image's virtual size; a smaller size than the
// image's is refused because it would cut off the guest's file systems.
func createOverlay(ctx context.Context, backing, overlay string, sizeGiB uint64) error {
	args := []string{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, overlay}
	if sizeGiB > 0 {
		if err := checkDiskSize(ctx, backing, sizeGiB); err != nil {
			return err
		}
		args = append(args, strconv.FormatUint(sizeGiB, 10)+"G")
	}
	if _, err := os.Stat(overlay); err == nil {
		// Only reached when no domain uses it (Create checks first): a
		// leftover from an interrupted Create.
		if err := os.Remove(overlay); err != nil {
			return fmt.Errorf("remove stale overlay: %w", err)
		}
	}
	if _, err := runQemuImg(ctx, args...); err != nil {
		_ = removeIfExists(overlay)
		return err
	}
	return nil
}

// checkDiskSize refuses a disk of sizeGiB (0: the image's own size) smaller
// than the image backing: it would cut off the guest's file systems.
func checkDiskSize(ctx context.Context, backing string, sizeGiB uint64) error {
	if sizeGiB == 0 {
		return nil
	}
	virtual, err := virtualSize(ctx, backing)
	if err != nil {
		return err
	}
	if sizeGiB<<30 < virtual {
		return fmt.Errorf("disk %d GiB is smaller than the image (%d bytes): %w", sizeGiB, virtual, hypervisor.ErrInvalidSpec)
	}
	return nil
}

// virtualSize reads an image's virtual size in bytes.
func virtualSize(ctx context.Context, path string) (uint64, error) {
	out, err := runQemuImg(ctx, "info", "--output=json", "-f", "qcow2", path)
	if err != nil {
		return 0, err
	}
	var info struct {
		VirtualSize uint64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return info.VirtualSize, nil
}

// runQemuImg runs qemu-img with an argument list, never through a shell.
func runQemuImg(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, qemuImg, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qemu-img %s: %w", args[0], ctx.Err())
		}
		return nil, fmt.Errorf("qemu-img %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
