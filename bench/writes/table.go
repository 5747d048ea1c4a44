package writes

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one measured (system, clients) cell of the benchmark.
type Row struct {
	System  string
	Clients int
	Result  Result
	// OtherCPU is the share of the machine's CPU used by processes other than
	// the benchmark and its cluster during the row (0 if unknown). Rows above
	// NoisyCPU get a warning under the table.
	OtherCPU float64
}

// NoisyCPU is the OtherCPU share above which a row is flagged as measured on
// a busy machine. Some "other" CPU is induced by the benchmark itself (block
// I/O completion in kworker/kblockd, journal commits in jbd2: ~5-13% of a
// 2-core VM at these rates), hence the margin.
const NoisyCPU = 0.20

// WriteTable prints rows as a table. With one system it has the columns
//
//	system  clients  ops/s  p50(ms)  p99(ms)  errors
//
// With several, the systems are printed side by side, one line per client
// count; if "etcd" is present, every other system's ratios to it of
// throughput and p99 are added per line (flotilla/etcd, flotilla+agent/etcd).
// Below the table, each system's throughput at the largest client count is
// compared to that at the smallest (e.g. flotilla@256 vs flotilla@1), and
// each Flotilla system is checked against its targets (at least etcd's
// throughput at the largest count, at least ScaleTarget times its own at the
// smallest).
func WriteTable(w io.Writer, rows []Row) error {
	var systems []string
	var clients []int
	cell := map[string]map[int]Result{}
	for _, r := range rows {
		if !slices.Contains(systems, r.System) {
			systems = append(systems, r.System)
			cell[r.System] = map[int]Result{}
		}
		if !slices.Contains(clients, r.Clients) {
			clients = append(clients, r.Clients)
		}
		cell[r.System][r.Clients] = r.Result
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)

	if len(systems) <= 1 {
		fmt.Fprintln(tw, "system\tclients\tops/s\tp50(ms)\tp99(ms)\terrors\t")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%s\t", r.System, r.Clients, resultCells(r.Result))
			fmt.Fprintln(tw)
		}
	} else {
		hdr := []string{"clients"}
		for _, s := range systems {
			hdr = append(hdr, s+" ops/s", "p50(ms)", "p99(ms)", "errors")
		}
		ratios := compared(systems)
		for _, s := range ratios {
			hdr = append(hdr, s+"/etcd ops/s", s+"/etcd p99")
		}
		fmt.Fprintln(tw, strings.Join(hdr, "\t")+"\t")
		for _, c := range clients {
			line := []string{fmt.Sprint(c)}
			for _, s := range systems {
				if r, ok := cell[s][c]; ok {
					line = append(line, resultCells(r))
				} else {
					line = append(line, "-\t-\t-\t-")
				}
			}
			for _, s := range ratios {
				f, fok := cell[s][c]
				e, eok := cell["etcd"][c]
				if fok && eok {
					line = append(line, ratio(f.Throughput, e.Throughput),
						ratio(float64(f.P99), float64(e.P99)))
				} else {
					line = append(line, "-", "-")
				}
			}
			fmt.Fprintln(tw, strings.Join(line, "\t")+"\t")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	for _, r := range rows {
		if r.OtherCPU > NoisyCPU {
			fmt.Fprintf(w, "warning: other processes used %.0f%% of the machine's CPU during %s@%d\n",
				100*r.OtherCPU, r.System, r.Clients)
		}
	}
	if len(clients) >= 2 {
		lo, hi := slices.Min(clients), slices.Max(clients)
		for _, s := range systems {
			a, aok := cell[s][lo]
			b, bok := cell[s][hi]
			if aok && bok {
				fmt.Fprintf(w, "%s@%d vs %s@%d: throughput x%s, p99 x%s\n",
					s, hi, s, lo, ratio(b.Throughput, a.Throughput), ratio(float64(b.P99), float64(a.P99)))
			}
		}
		writeTargets(w, systems, cell, lo, hi)
	}
	return nil
}

// ScaleTarget is how many times its single-client throughput Flotilla is to
// reach at the largest client count.
const ScaleTarget = 20

// writeTargets checks each Flotilla system against its targets: at least
// etcd's throughput at the largest client count, and at least ScaleTarget
// times its own throughput at the smallest.
func writeTargets(w io.Writer, systems []string, cell map[string]map[int]Result, lo, hi int) {
	verdict := func(x, want float64) string {
		if x >= want {
			return fmt.Sprintf("x%.2f met", x)
		}
		return fmt.Sprintf("x%.2f MISSED", x)
	}
	for _, s := range systems {
		// "@leader" rows are a diagnostic of what forwarding costs, not a
		// way clients are told to connect: no target applies to them.
		if !strings.HasPrefix(s, "flotilla") || strings.HasSuffix(s, "@leader") {
			continue
		}
		b, bok := cell[s][hi]
		if !bok || b.Throughput == 0 {
			continue
		}
		var parts []string
		if e, ok := cell["etcd"][hi]; ok && e.Throughput > 0 {
			parts = append(parts, fmt.Sprintf("%s@%d >= etcd@%d: %s", s, hi, hi, verdict(b.Throughput/e.Throughput, 1)))
		}
		if a, ok := cell[s][lo]; ok && a.Throughput > 0 {
			parts = append(parts, fmt.Sprintf("%s@%d >= %dx %s@%d: %s", s, hi, ScaleTarget, s, lo, verdict(b.Throughput/a.Throughput, ScaleTarget)))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "target: %s\n", strings.Join(parts, "; "))
		}
	}
}

// compared are the systems given a ratio to etcd: every other one, if etcd
// is present.
func compared(systems []string) []string {
	if !slices.Contains(systems, "etcd") {
		return nil
	}
	var out []string
	for _, s := range systems {
		if s != "etcd" {
			out = append(out, s)
		}
	}
	return out
}

func resultCells(r Result) string {
	return fmt.Sprintf("%.0f\t%s\t%s\t%d", r.Throughput, ms(r.P50), ms(r.P99), r.Errors)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}
