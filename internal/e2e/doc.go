// Package e2e holds Flotilla's end-to-end tests: the real coordinator and
// agent binaries as processes, a real libvirtd with QEMU booting the test
// guest, and the real grpcurl binary (server reflection, no proto files) as
// the only client.
package e2e
