// Package convert maps between the coordinator's domain records and enums
// (lifecycle, state, vocabulary, usage) and the protobuf messages of the
// public API (proto/flotilla/v1) and the agent link (proto/flotilla/agent/v1).
// Each pairing of a domain enum with a wire enum is one table here, read in
// both directions, so the public API, the orchestrator and the agent link
// cannot disagree on what a value means.
package convert
