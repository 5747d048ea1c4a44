// Package lifecycle holds Flotilla's pure instance rules: how the one status
// word is derived from the four recorded facts, which actions each status
// allows, and what each action asks of the hypervisor. No I/O lives here, so
// every combination can be tested exhaustively.
//
// The derivation is deliberately total (like Nova's _STATE_MAP, but with no
// holes): an operation in flight decides the status first, because the user
// asked for that transition; then a failed result is an error; then the
// observed power state, read against the desired state, decides the rest.
// Observed state never rewrites desired state: a mismatch shows as its own
// status (UNEXPECTED_SHUTOFF, CRASHED, ERROR) for the user to settle.
package lifecycle
