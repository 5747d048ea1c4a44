package e2echaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// Fault is one kind of fault the injector can pick.
type Fault string

const (
	FaultLeaderKill   Fault = "kill-leader"
	FaultFollowerKill Fault = "kill-follower"
	FaultAgentKill    Fault = "kill-agent"
	// FaultLibvirtdRestart restarts a host's hypervisor daemon: the fake's,
	// or a test bed host's own libvirtd (never the machine's, which others use).
	FaultLibvirtdRestart Fault = "restart-libvirtd"
	FaultGuestPowerOff   Fault = "guest-poweroff"
	// FaultPartition cuts an agent off the coordinators (its traffic held,
	// as dropped packets hold it) for a while, then heals.
	FaultPartition Fault = "partition-agent"
)

// AllFaults are every fault kind, in the order tables print them.
var AllFaults = []Fault{FaultLeaderKill, FaultFollowerKill, FaultAgentKill, FaultLibvirtdRestart, FaultGuestPowerOff, FaultPartition}

// Injector picks faults (and their timing) from a seeded source, so a
// failing round is replayed by its seed.
type Injector struct {
	Seed  uint64
	kinds []Fault
	rng   *rand.Rand
}

// NewInjector picks among kinds; a libvirtd restart only when allowLibvirtd.
func NewInjector(seed uint64, kinds []Fault, allowLibvirtd bool) *Injector {
	var ks []Fault
	for _, k := range kinds {
		if k == FaultLibvirtdRestart && !allowLibvirtd {
			continue
		}
		ks = append(ks, k)
	}
	return &Injector{Seed: seed, kinds: ks, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Kinds are the faults this injector picks from.
func (in *Injector) Kinds() []Fault { return slices.Clone(in.kinds) }

// Next is the next fault and when, after the round's operation is accepted,
// to inject it (0 to maxDelay).
func (in *Injector) Next(maxDelay time.Duration) (Fault, time.Duration) {
	k := in.kinds[in.rng.IntN(len(in.kinds))]
	return k, time.Duration(in.rng.Int64N(int64(maxDelay) + 1))
}

// IntN is the injector's source, for the workload's own choices.
func (in *Injector) IntN(n int) int { return in.rng.IntN(n) }

// Observed is what one round's invariants are checked against: the
// cluster's records and every host's hypervisor, read after the round.
type Observed struct {
	Now time.Time
	// Ops are the operations the workload got acknowledged, by id.
	Ops map[string]OpView
	// Instances are the cluster's instance records, by id.
	Instances map[string]InstanceView
	// Domains are, per host, the domains its hypervisor has, by instance id
	// with their power state ("running", "shut-off", ...).
	Domains map[string]map[string]string
	// Digests are every replica's state digest at one revision.
	Digests map[string]string
	// Grace is a heartbeat: what a transitional status may outlast its deadline by.
	Grace time.Duration
}

// OpView is an acknowledged operation as the cluster records it.
type OpView struct {
	Found    bool
	Done     bool
	Deadline time.Time
	// Made is how many domains its steps made on the hosts (created,
	// imported, adopted), by that kind, counted by the hypervisor across
	// agent restarts; more than one of a kind is the operation run twice.
	Made map[string]int
}

// InstanceView is an instance record.
type InstanceView struct {
	Status       string // the public Status enum name
	Transitional bool
	Deadline     time.Time // of its current operation
	HostID       string
	Deleted      bool
	// Expect is the power state its status says the host must show ("" if
	// any, e.g. ERROR or UNKNOWN).
	Expect string
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string
	Detail    string
}

func (v Violation) String() string { return v.Invariant + ": " + v.Detail }

// Check is every invariant over one observation.
func Check(o Observed) []Violation {
	var out []Violation
	add := func(inv, f string, a ...any) { out = append(out, Violation{inv, fmt.Sprintf(f, a...)}) }
	for _, id := range sortedKeys(o.Ops) {
		op := o.Ops[id]
		switch {
		case !op.Found:
			add("op-lost", "acknowledged operation %s is not recorded", id)
		case twice(op.Made) != "":
			add("op-twice", "operation %s took effect twice: %s", id, twice(op.Made))
		case !op.Done && !op.Deadline.IsZero() && o.Now.After(op.Deadline.Add(o.Grace)):
			add("op-past-deadline", "operation %s not done %s after its deadline", id, o.Now.Sub(op.Deadline))
		}
	}
	where := map[string][]string{}
	for _, h := range sortedKeys(o.Domains) {
		for id := range o.Domains[h] {
			where[id] = append(where[id], h)
		}
	}
	for _, id := range sortedKeys(where) {
		hosts := where[id]
		sort.Strings(hosts)
		running := 0
		for _, h := range hosts {
			if o.Domains[h][id] == "running" {
				running++
			}
		}
		if running > 1 {
			add("guest-on-two-hosts", "instance %s runs on %v", id, hosts)
		}
		inst, ok := o.Instances[id]
		if !ok || inst.Deleted {
			add("orphan", "domain of %s on %v, which no live record owns", id, hosts)
			continue
		}
		for _, h := range hosts {
			if h != inst.HostID && !inst.Transitional {
				add("orphan", "domain of %s on %s; its record places it on %q", id, h, inst.HostID)
			}
		}
	}
	for _, id := range sortedKeys(o.Instances) {
		inst := o.Instances[id]
		if inst.Transitional && !inst.Deadline.IsZero() && o.Now.After(inst.Deadline.Add(o.Grace)) {
			add("transitional-past-deadline", "instance %s %s %s after its deadline", id, inst.Status, o.Now.Sub(inst.Deadline))
		}
		if inst.Transitional || inst.Expect == "" {
			continue
		}
		got, ok := o.Domains[inst.HostID][id]
		if !ok {
			got = "no-domain"
		}
		if got != inst.Expect {
			add("status-vs-hypervisor", "instance %s is %s but host %q shows %s", id, inst.Status, inst.HostID, got)
		}
	}
	var first string
	for _, r := range sortedKeys(o.Digests) {
		if first == "" {
			first = o.Digests[r]
		} else if o.Digests[r] != first {
			add("digest", "replica %s has digest %s, others %s", r, o.Digests[r], first)
		}
	}
	return out
}

// twice names the kinds of domain an operation made more than once.
func twice(made map[string]int) string {
	var out []string
	for _, how := range sortedKeys(made) {
		if made[how] > 1 {
			out = append(out, fmt.Sprintf("%s %d times", how, made[how]))
		}
	}
	return strings.Join(out, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Stats are a soak's numbers per fault kind.
type Stats struct {
	rounds     map[Fault]int
	violations map[Fault]int
	recovery   map[Fault][]time.Duration
}

func NewStats() *Stats {
	return &Stats{rounds: map[Fault]int{}, violations: map[Fault]int{}, recovery: map[Fault][]time.Duration{}}
}

// Add records one round.
func (s *Stats) Add(f Fault, violations int, recovery time.Duration) {
	s.rounds[f]++
	s.violations[f] += violations
	s.recovery[f] = append(s.recovery[f], recovery)
}

// Violations is the total.
func (s *Stats) Violations() (n int) {
	for _, v := range s.violations {
		n += v
	}
	return n
}

// Rounds is the total.
func (s *Stats) Rounds() (n int) {
	for _, v := range s.rounds {
		n += v
	}
	return n
}

// Percentile is the p-th percentile (nearest rank) of ds; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Table is the per-fault summary: rounds, violations, recovery p50/p99.
func (s *Stats) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %6s %10s %10s %10s\n", "fault", "rounds", "violations", "p50", "p99")
	for _, f := range AllFaults {
		if s.rounds[f] == 0 {
			continue
		}
		fmt.Fprintf(&b, "%-18s %6d %10d %10s %10s\n", f, s.rounds[f], s.violations[f],
			Percentile(s.recovery[f], 50).Round(time.Millisecond), Percentile(s.recovery[f], 99).Round(time.Millisecond))
	}
	return b.String()
}
