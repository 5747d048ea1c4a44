package scheduler

import (
	"fmt"
	"slices"
	"strings"
)

// Explain says briefly why hosts cannot take r (without preemption), counting
// each host under the first reason that rules it out, biggest count first,
// e.g. "3 hosts: 2 full (memory), 1 cordoned". "too small" means that even
// an empty host of that size would not do. With a resource list, a bare name
// means every host counted is short of it, "1 vcpu" that only one is.
func Explain(r Request, hosts []Host, p Policy) string {
	if len(hosts) == 0 {
		return "no hosts"
	}
	var count [numVerdicts]int
	var short [numVerdicts][3]int // per resource, for tooSmall and full
	for i := range hosts {
		v, s := judge(&hosts[i], &r, &p)
		count[v]++
		for k := range 3 {
			if s&(1<<k) != 0 {
				short[v][k]++
			}
		}
	}
	type part struct {
		n    int
		text string
	}
	var parts []part
	for v := range numVerdicts {
		n := count[v]
		if n == 0 {
			continue
		}
		var text string
		switch v {
		case accepted:
			text = fmt.Sprintf("%d can take it", n)
		case notReady:
			text = fmt.Sprintf("%d not ready", n)
		case cordoned:
			text = fmt.Sprintf("%d cordoned", n)
		case wrongKind:
			text = fmt.Sprintf("%d not %s", n, r.Kind)
		case missingLabels:
			text = fmt.Sprintf("%d missing labels", n)
		case missingNetworks:
			text = fmt.Sprintf("%d not serving its networks", n)
		case antiAffinity:
			text = fmt.Sprintf("%d already run group %s", n, r.AntiAffinityGroup)
		case tooSmall:
			text = fmt.Sprintf("%d too small (%s)", n, resources(n, short[v]))
		case full:
			text = fmt.Sprintf("%d full (%s)", n, resources(n, short[v]))
		}
		parts = append(parts, part{n, text})
	}
	slices.SortStableFunc(parts, func(a, b part) int { return b.n - a.n })
	texts := make([]string, len(parts))
	for i, pt := range parts {
		texts[i] = pt.text
	}
	noun := "hosts"
	if len(hosts) == 1 {
		noun = "host"
	}
	return fmt.Sprintf("%d %s: %s", len(hosts), noun, strings.Join(texts, ", "))
}

// resources lists the short resources among n hosts: "memory" if all n are
// short of memory, "1 vcpu" if only one is short of vCPUs.
func resources(n int, short [3]int) string {
	names := [3]string{"vcpu", "memory", "disk"}
	var out []string
	for k, c := range short {
		switch {
		case c == n:
			out = append(out, names[k])
		case c > 0:
			out = append(out, fmt.Sprintf("%d %s", c, names[k]))
		}
	}
	return strings.Join(out, ", ")
}
