// Package membership holds the rules of safe coordinator membership, in the
// manner of etcd's learners and Consul's autopilot: a new server joins as a
// non-voter and is promoted to voter by the leader only once it has kept
// up with the log for a while; a member's addresses change only at that
// member's own request; and no change may leave the voters without a
// quorum of live servers.
//
// "Live" and "caught up" come from the Raft transport alone (what the
// leader heard back from each server's Raft address), never from anything
// a client says, so a made-up server that never answers stays a non-voter
// and cannot cost the cluster its quorum.
package membership
