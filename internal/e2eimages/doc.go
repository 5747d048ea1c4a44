// Package e2eimages holds the real-libvirt tests of rebuild, rescue,
// unrescue and bundle (issue 16, points 2-4). They need libvirtd and the
// test guest of recipe 8 or later (scripts/build-test-guest.sh), and skip
// nothing: run them with CI=true on a prepared host.
package e2eimages
