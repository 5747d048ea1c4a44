// Package opstest tests what an operator sees of running daemons: the
// metrics each serves after a known sequence of operations, /readyz as a
// coordinator loses and regains its quorum, and every binary's --version.
// Its tests start real coordinator and agent processes with the fake
// hypervisor (no libvirt), so they run everywhere make test runs.
package opstest
