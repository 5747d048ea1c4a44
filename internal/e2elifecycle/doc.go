// Package e2elifecycle holds the real-libvirt tests of deallocate, soft
// delete and restore, and upgrade with automatic rollback (issue 16): a
// coordinator and an agent as processes, the test guest on the machine's
// libvirtd. The tests live in _test files; this file only names the package.
package e2elifecycle
