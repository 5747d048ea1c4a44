package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flotilla-vm/flotilla/bench/stats"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// results are the raw samples of one run.
type results struct {
	latAll      []time.Duration // event -> watch, both directions
	latPaused   []time.Duration
	latRunning  []time.Duration
	callToEvent []time.Duration // DomainSuspend/Resume call -> the bench's event
	latEvents   []latEvent

	flotilla []time.Duration // CreateInstance -> RUNNING on the watch
	virsh    []time.Duration // virsh create, exec -> exit
	overlay  []time.Duration // qemu-img create of the overlay (not in virsh's time)

	latID     string   // the latency instance
	createIDs []string // the instances of the timed Flotilla creates

	breakdown []namedSamples // where the time goes, from the agent's log
	notes     []string
}

type namedSamples struct {
	name    string
	samples []time.Duration
}

// latEvent is one latency sample's two timestamps.
type latEvent struct {
	calledAt, eventAt, watchAt time.Time
	power                      pb.PowerState
}

// print writes the table.
func (r *results) print(w io.Writer, b *bench) {
	env := fmt.Sprintf("libvirt %s, domain type %s, %d cores, %s", orUnknown(b.libvirtVersion), orUnknown(b.domainType),
		cores(), time.Now().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "\nflotilla-bench  (%s)\n", env)
	fmt.Fprintf(w, "%-44s %5s %8s %8s %8s %8s %8s\n", "metric", "n", "p50", "p90", "p99", "max", "mean")
	row := func(name string, s []time.Duration) {
		x := stats.Summarize(s)
		fmt.Fprintf(w, "%-44s %5d %8.2f %8.2f %8.2f %8.2f %8.2f\n", name, x.N,
			stats.Ms(x.P50), stats.Ms(x.P90), stats.Ms(x.P99), stats.Ms(x.Max), stats.Ms(x.Mean))
	}
	row("event -> coordinator watch (ms)", r.latAll)
	row("  of which -> PAUSED (ms)", r.latPaused)
	row("  of which -> RUNNING (ms)", r.latRunning)
	row("create -> RUNNING via Flotilla (ms)", r.flotilla)
	row("virsh create (ms)", r.virsh)
	row("  (qemu-img overlay, untimed above) (ms)", r.overlay)

	f, v := stats.Summarize(r.flotilla), stats.Summarize(r.virsh)
	if v.P50 > 0 && v.Mean > 0 {
		fmt.Fprintf(w, "overhead: Flotilla/virsh = %.2f, %+.0f ms at p50; %.2f, %+.0f ms by mean\n",
			float64(f.P50)/float64(v.P50), stats.Ms(f.P50-v.P50),
			float64(f.Mean)/float64(v.Mean), stats.Ms(f.Mean-v.Mean))
	}
	if len(r.breakdown) > 0 {
		fmt.Fprintln(w, "where the time goes (agent debug log timestamps, same host clock):")
		for _, b := range r.breakdown {
			row(b.name, b.samples)
		}
	}
	for _, n := range r.notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "?"
	}
	return s
}
