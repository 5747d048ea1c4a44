package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// agentLine is one line of the agent's JSON log (the fields used here).
type agentLine struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Instance string    `json:"instance"`
	State    string    `json:"state"`
	Took     int64     `json:"took"` // nanoseconds
}

func readAgentLog(path string) ([]agentLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []agentLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l agentLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}

// analyze splits the measured times at the agent's debug log lines: the
// "power event" line is written when the agent has the event and the state
// it queried after it, just before sending it to the coordinator; "domain
// created and started" carries the driver's own time for a create.
func (r *results) analyze(agentLog string) {
	lines, err := readAgentLog(agentLog)
	if err != nil {
		r.notes = append(r.notes, fmt.Sprintf("no breakdown: agent log: %v", err))
		return
	}

	// Event -> watch. Rounds do not overlap: a sample's agent line lies
	// between the bench's libvirt call and the sample's watch message.
	var toAgent, agentToWatch []time.Duration
	want := map[pb.PowerState]string{pb.PowerState_POWER_STATE_PAUSED: "paused", pb.PowerState_POWER_STATE_RUNNING: "running"}
	for _, e := range r.latEvents {
		for _, l := range lines {
			if l.Msg == "power event" && l.Instance == r.latID && l.State == want[e.power] &&
				!l.Time.Before(e.calledAt) && !l.Time.After(e.watchAt) {
				toAgent = append(toAgent, l.Time.Sub(e.eventAt))
				agentToWatch = append(agentToWatch, e.watchAt.Sub(l.Time))
				break
			}
		}
	}
	if len(toAgent) > 0 {
		r.breakdown = append(r.breakdown,
			namedSamples{"  event -> agent sends it (ms)", toAgent},
			namedSamples{"  agent sends -> watch delivers (ms)", agentToWatch})
	}
	if len(toAgent) < len(r.latEvents) {
		r.notes = append(r.notes, fmt.Sprintf("%d of %d latency samples have no matching agent log line", len(r.latEvents)-len(toAgent), len(r.latEvents)))
	}

	// Create: the driver's time (overlay, define, start) against the rest.
	var driver, rest []time.Duration
	for i, id := range r.createIDs {
		for _, l := range lines {
			if l.Msg == "domain created and started" && l.Instance == id && i < len(r.flotilla) {
				d := time.Duration(l.Took)
				driver = append(driver, d)
				rest = append(rest, r.flotilla[i]-d)
				break
			}
		}
	}
	if len(driver) > 0 {
		r.breakdown = append(r.breakdown,
			namedSamples{"  create: agent driver, overlay+define+start", driver},
			namedSamples{"  create: everything else (ms)", rest})
	}
}
