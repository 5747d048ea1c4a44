// Package state is the coordinator's replicated state: instances,
// operations and hosts, indexed in memory, each change stamped with a
// revision. Only the FSM mutates it (through Tx), in Raft log order, so every
// replica holds the same records at the same revision. Readers get copies.
//
// A bounded history of instance changes backs resumable watches: a watcher
// that asks for changes after revision R gets them from the history, or is
// told R was compacted and must list again.
package state
