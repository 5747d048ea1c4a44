// Package e2echaos holds issue 19's proofs: an agent SIGKILLed at each point
// of a step on real libvirt leaves the instance in the status libvirt's
// truth implies (agentkill_test.go), and random fault rounds over a cluster
// keep its invariants (chaos.go, run by chaos_test.go and `make chaos`).
package e2echaos
