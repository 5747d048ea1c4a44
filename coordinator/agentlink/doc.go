// Package agentlink serves flotilla.agent.v1: one long-lived stream per
// agent. It turns what agents report (registration with full inventory,
// power-state events, periodic resyncs, step results) into commands on the
// replicated log, and carries steps from the orchestrator to the agents.
//
// A host speaks only for itself: every report is tagged with the session's
// host id and epoch, and the FSM ignores reports about instances placed
// elsewhere and reports from a superseded session.
//
// Sending to an agent never waits: each session has a bounded queue, a full
// one refuses (the orchestrator keeps the step and delivers it again), and
// a session whose stream stops taking messages is ended so its agent
// reconnects and resyncs.
package agentlink
