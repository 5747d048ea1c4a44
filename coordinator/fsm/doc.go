// Package fsm applies committed Raft log entries to the coordinator state.
//
// Each entry is a command: a type name, the leader's timestamp and a body.
// Entries are written in one of two formats (logformat.go): format 2, a
// flotilla.raft.v1.Entry whose body is the command's message of
// proto/flotilla/raft/v1, with a schema version and an ignorable flag; or
// format 1, the envelope with JSON bodies of releases before log versions
// (legacy_*.go), still read, and written while some server of the cluster
// reads nothing else. The cluster's log version (a replicated fact, raised
// by coordinator/upgrade) decides which: Downgrade rewrites a proposal as it
// admits. Snapshots follow the same version (snapshot_pb.go).
//
// Apply dispatches through a table of small apply functions, one per
// command type, each in the file of the record it changes. A body that does
// not decode, or an entry of a type this server does not know and may not
// ignore, panics: replicas must never silently diverge. A business refusal
// (not found, not allowed, no capacity) is returned as the entry's result
// and changes nothing.
//
// Rules that depend on current state (is this action allowed, does the host
// have room, was this request_id seen) are checked here, at commit time, so
// two concurrent requests can never both pass a check that only one may.
package fsm
