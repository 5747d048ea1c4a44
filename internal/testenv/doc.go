// Package testenv starts Flotilla's real binaries as processes for
// end-to-end tests and drives them with the real grpcurl binary. It also
// decides what a missing dependency means: under CI=true a test that needs
// libvirtd, the test guest or grpcurl fails; elsewhere it is skipped with
// the command that would provide it.
package testenv
