// Package fsm applies committed Raft log entries to the coordinator state.
//
// Each entry is a Command: a type name, the leader's timestamp and a JSON
// body. Apply dispatches through a table of small apply functions, one per
// command type, each in the file of the record it changes. A body that does
// not decode panics: replicas must never silently diverge. A business
// refusal (not found, not allowed, no capacity) is returned as the entry's
// result and changes nothing.
//
// Rules that depend on current state (is this action allowed, does the host
// have room, was this request_id seen) are checked here, at commit time, so
// two concurrent requests can never both pass a check that only one may.
package fsm
