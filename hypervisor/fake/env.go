package fake

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// FaultsEnv names the environment variable FaultsFromEnv reads: tests that
// run the agent binary with --hypervisor=fake inject faults through it, so
// the agent's command line carries no test switches. Its value is a
// comma-separated list of
//
//	delay:Method=duration   every call of Method takes duration first (SetDelay)
//	fail:Method=N[:kind]    the next N calls of Method fail, -1 every call
//	                        (InjectFault); kind is unavailable (the default,
//	                        transient), invalid or state
//
// e.g. FLOTILLA_FAKE_FAULTS=fail:Start=2,delay:ImportDomain=2s.
const FaultsEnv = "FLOTILLA_FAKE_FAULTS"

// Faults are delays and failures a Driver starts with (Options.Faults).
type Faults struct {
	Delays map[string]time.Duration
	Fails  map[string]Failure
}

// Failure makes the next Times calls of a method (-1: every call) fail with Err.
type Failure struct {
	Times int
	Err   error
}

// failureKinds are the failures a fail: entry can inject, by the hypervisor
// sentinel the agent classifies (unavailable is transient, the others not).
var failureKinds = map[string]error{
	"unavailable": hypervisor.ErrUnavailable,
	"invalid":     hypervisor.ErrInvalidSpec,
	"state":       hypervisor.ErrInvalidState,
}

// FaultsFromEnv parses FaultsEnv; unset or empty is no faults.
func FaultsFromEnv() (Faults, error) {
	f, err := ParseFaults(os.Getenv(FaultsEnv))
	if err != nil {
		return Faults{}, fmt.Errorf("%s: %w", FaultsEnv, err)
	}
	return f, nil
}

// ParseFaults reads a FaultsEnv value. Unknown methods are errors: a typo
// would silently disable the fault a test relies on.
func ParseFaults(spec string) (Faults, error) {
	f := Faults{Delays: map[string]time.Duration{}, Fails: map[string]Failure{}}
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		kind, rest, _ := strings.Cut(entry, ":")
		method, v, ok := strings.Cut(rest, "=")
		if !ok || !methods[method] {
			return Faults{}, fmt.Errorf("%q: want delay:Method=duration or fail:Method=N[:kind], Method a Driver method", entry)
		}
		switch kind {
		case "delay":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return Faults{}, fmt.Errorf("%q: want delay:Method=duration", entry)
			}
			f.Delays[method] = d
		case "fail":
			fl, err := parseFailure(v)
			if err != nil {
				return Faults{}, fmt.Errorf("%q: %w", entry, err)
			}
			f.Fails[method] = fl
		default:
			return Faults{}, fmt.Errorf("%q: want delay:... or fail:...", entry)
		}
	}
	return f, nil
}

// parseFailure reads "N" or "N:kind" (kind default unavailable).
func parseFailure(v string) (Failure, error) {
	n, kind, _ := strings.Cut(v, ":")
	if kind == "" {
		kind = "unavailable"
	}
	times, err := strconv.Atoi(n)
	sentinel, ok := failureKinds[kind]
	if err != nil || times == 0 || times < -1 || !ok {
		return Failure{}, errors.New("want fail:Method=N[:unavailable|invalid|state], N > 0 or -1 for every call")
	}
	return Failure{Times: times, Err: fmt.Errorf("injected by %s: %w", FaultsEnv, sentinel)}, nil
}
