package e2echaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LibvirtdEnv must be "1" for RestartLibvirtd to act: the machine's
// libvirtd may be shared with other test runs, so only the chaos make
// target (on a test bed of its own) sets it.
const LibvirtdEnv = "FLOTILLA_CHAOS_LIBVIRTD"

// ErrLibvirtdGated is RestartLibvirtd's refusal without LibvirtdEnv.
var ErrLibvirtdGated = errors.New("libvirtd restarts are off: set " + LibvirtdEnv + "=1 on a test bed of its own")

// RestartLibvirtd stops one host's libvirtd by its pid file (never by name:
// that would stop every host's daemon) and starts it again with args (e.g.
// "-d", "-p", pidFile, "-f", conf), waiting until its socket answers.
func RestartLibvirtd(ctx context.Context, pidFile, socket string, args ...string) error {
	if os.Getenv(LibvirtdEnv) != "1" {
		return ErrLibvirtdGated
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("libvirtd pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("libvirtd pid file %s holds %q", pidFile, b)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop libvirtd %d: %w", pid, err)
	}
	for syscall.Kill(pid, 0) == nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("libvirtd %d did not stop: %w", pid, ctx.Err())
		case <-time.After(50 * time.Millisecond): // polling for the process's end
		}
	}
	if out, err := exec.CommandContext(ctx, "libvirtd", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("start libvirtd: %w: %s", err, out)
	}
	for {
		if _, err := os.Stat(socket); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("libvirtd socket %s did not come back: %w", socket, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
