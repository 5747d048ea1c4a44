package testenv

import (
	"os"
	"sync"
	"syscall"
	"testing"
)

var held sync.Map // testing.TB -> true while it holds the lock

// LockLibvirt serializes tests of different packages (go test runs packages
// in parallel) around the one shared libvirtd: a test that restarts it takes
// the lock exclusively, others share it. Released when the test ends; a
// second call in the same test keeps the lock it already holds.
func LockLibvirt(t testing.TB, exclusive bool) {
	t.Helper()
	if _, loaded := held.LoadOrStore(t, true); loaded {
		return
	}
	f, err := os.OpenFile("/tmp/flotilla-libvirt-tests.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close(); held.Delete(t) })
}
