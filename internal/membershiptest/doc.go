// Package membershiptest runs real coordinator processes (no agent, no
// libvirt) to test the safety of cluster membership: a made-up server
// never becomes a voter, a member's address cannot be taken over, a
// removal that would lose the quorum is refused, and a cluster that lost
// its quorum for good is recovered from one survivor's data dir.
package membershiptest
