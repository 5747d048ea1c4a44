//go:build testhooks

package main

import "os"

// IgnoreEventsEnv, set to 1, leaves hypervisor events unsubscribed, so the
// coordinator learns of changes only through resyncs. Only test builds
// (internal/testenv builds the commands with -tags testhooks) read it: the
// shipped agent has no test switches.
const IgnoreEventsEnv = "FLOTILLA_AGENT_IGNORE_EVENTS"

func init() {
	testHooks = func(cfg *config) {
		cfg.ignoreEvents = os.Getenv(IgnoreEventsEnv) == "1"
	}
}
