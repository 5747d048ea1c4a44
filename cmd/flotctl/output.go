package main

import (
	"cmp"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// writeTable writes a header and rows aligned in columns; empty cells are
// shown as "-" so that every row has the same number of fields.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, cell := range row {
			cells[i] = dash(escape(cell))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// enumName returns an enum value's name without its type prefix, e.g.
// STATUS_RUNNING -> RUNNING.
func enumName(s fmt.Stringer, prefix string) string {
	return strings.TrimPrefix(s.String(), prefix)
}

func faultText(f *flotillav1.Fault) string {
	switch {
	case f == nil:
		return ""
	case f.GetMessage() == "":
		return f.GetCode()
	case f.GetCode() == "":
		return f.GetMessage()
	}
	return f.GetCode() + ": " + f.GetMessage()
}

func printInstances(w io.Writer, f outFmt, insts []*flotillav1.Instance, vocabs ...flotillav1.Vocabulary) error {
	if f.document() {
		return writeDoc(w, f, insts)
	}
	// The ADDRESSES column only when some instance has a NIC, READINESS
	// when some instance has one (a server older than readiness has none).
	withNICs, withReadiness := false, false
	for _, in := range insts {
		withNICs = withNICs || len(in.GetInterfaces()) > 0
		withReadiness = withReadiness || in.GetReadiness() != flotillav1.Readiness_READINESS_UNSPECIFIED
	}
	rows := make([][]string, 0, len(insts))
	for _, in := range insts {
		row := []string{
			in.GetId(),
			in.GetName(),
			enumName(in.GetStatus(), "STATUS_"),
			enumName(in.GetPowerState(), "POWER_STATE_"),
			in.GetHostId(),
			in.GetCurrentOperationId(),
		}
		if withReadiness {
			r := "-"
			if in.GetReadiness() != flotillav1.Readiness_READINESS_UNSPECIFIED {
				r = strings.ToLower(enumName(in.GetReadiness(), "READINESS_"))
			}
			row = append(row, r)
		}
		if withNICs {
			row = append(row, addresses(in))
		}
		if f.wide() {
			sp := in.GetSpec()
			row = append(row, sp.GetImage(), fmt.Sprint(sp.GetVcpus()), fmt.Sprint(sp.GetMemoryMib()), fmt.Sprint(sp.GetDiskGib()),
				labelText(in.GetLabels()), placementText(in.GetPlacement()), timeText(in.GetCreateTime()), escape(in.GetProject()))
		}
		rows = append(rows, append(row, viewColumns(in, vocabs)...))
	}
	head := []string{"ID", "NAME", "STATUS", "POWER", "HOST", "OPERATION"}
	if withReadiness {
		head = append(head, "READINESS")
	}
	if withNICs {
		head = append(head, "ADDRESSES")
	}
	if f.wide() {
		head = append(head, "IMAGE", "VCPUS", "MEMORY_MIB", "DISK_GIB", "LABELS", "PLACEMENT", "CREATED", "PROJECT")
	}
	return writeTable(w, append(head, viewHeaders(vocabs)...), rows)
}

// viewHeaders names one extra column per vocabulary asked for.
func viewHeaders(vocabs []flotillav1.Vocabulary) []string {
	out := make([]string, len(vocabs))
	for i, v := range vocabs {
		out[i] = strings.ReplaceAll(enumName(v, "VOCABULARY_"), "_", "-")
	}
	return out
}

// viewColumns is the instance's state in each vocabulary: the seed's word,
// with Nova's task state or Azure's provisioning state when there is one.
func viewColumns(in *flotillav1.Instance, vocabs []flotillav1.Vocabulary) []string {
	out := make([]string, len(vocabs))
	for i, v := range vocabs {
		out[i] = "-"
		for _, view := range in.GetViews() {
			if view.GetVocabulary() != v {
				continue
			}
			out[i] = view.GetStatus()
			if t := view.GetFields()["task_state"]; t != "" {
				out[i] += " (" + t + ")"
			}
			if p := strings.TrimPrefix(view.GetFields()["provisioning"], "ProvisioningState/"); p != "" {
				out[i] += " (" + p + ")"
			}
		}
	}
	return out
}

func printOperations(w io.Writer, f outFmt, ops []*flotillav1.Operation) error {
	if f.document() {
		return writeDoc(w, f, ops)
	}
	rows := make([][]string, 0, len(ops))
	for _, op := range ops {
		rows = append(rows, []string{
			op.GetId(),
			op.GetInstanceId(),
			enumName(op.GetKind(), "OPERATION_KIND_"),
			enumName(op.GetState(), "OPERATION_STATE_"),
			op.GetStep(),
			timeText(op.GetCreateTime()),
			callerText(op.GetRequestedBy()),
			faultText(op.GetError()),
		})
		if f.wide() {
			rows[len(rows)-1] = append(rows[len(rows)-1], timeText(op.GetEndTime()), op.GetTargetHostId(), copyOrDash(op.GetCopy()))
		}
	}
	head := []string{"ID", "INSTANCE", "KIND", "STATE", "STEP", "CREATED", "REQUESTED_BY", "ERROR"}
	if f.wide() {
		head = append(head, "ENDED", "TARGET", "COPY")
	}
	return writeTable(w, head, rows)
}

// timeText shows a time in UTC to the second ("" if unset).
func timeText(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// callerText shows who asked: "alice (operator)", or "unauthenticated
// ADDRESS"; "" for operations the coordinator started itself.
func callerText(c *flotillav1.Caller) string {
	switch {
	case c == nil:
		return ""
	case !c.GetAuthenticated():
		return strings.TrimSpace("unauthenticated " + c.GetAddress())
	case len(c.GetRoles()) > 0:
		return c.GetName() + " (" + strings.Join(c.GetRoles(), ",") + ")"
	}
	return c.GetName()
}

// printOperation prints one operation in detail: its row, what may still
// be done with it, and its steps. JSON is the message as it is.
func printOperation(w io.Writer, f outFmt, op *flotillav1.Operation) error {
	if err := printOperations(w, f, []*flotillav1.Operation{op}); err != nil || f.document() {
		return err
	}
	var details [][]string
	if by := op.GetRequestedBy(); by.GetAuthenticated() && by.GetAddress() != "" {
		// (An unauthenticated caller's address is its REQUESTED_BY.)
		details = append(details, []string{"REQUESTED_FROM", by.GetAddress()})
	}
	if t := op.GetEndTime(); t != nil {
		details = append(details, []string{"ENDED", timeText(t)})
	}
	if t := op.GetTargetHostId(); t != "" {
		details = append(details, []string{"TARGET", t})
	}
	if !op.GetDone() {
		details = append(details, []string{"CANCELLABLE", yesNo(op.GetCancellable())})
	}
	if op.GetCancelRequested() {
		details = append(details, []string{"CANCEL_REQUESTED", yesNo(true)})
	}
	if c := op.GetCopy(); c != nil {
		details = append(details, []string{"COPY", copyText(c)})
	}
	if len(details) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, d := range details {
			fmt.Fprintf(tw, "%s\t%s\n", d[0], escape(d[1]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(op.GetSteps()) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return printSteps(w, op.GetSteps())
}

// printSteps writes an operation's steps as a table. HOST is "-" for a step
// the coordinator does itself; UNDO is the step that would undo this one.
func printSteps(w io.Writer, steps []*flotillav1.OperationStep) error {
	rows := make([][]string, 0, len(steps))
	for _, st := range steps {
		rows = append(rows, []string{
			st.GetName(),
			enumName(st.GetState(), "STEP_STATE_"),
			st.GetHostId(),
			attemptText(st.GetAttempt(), st.GetMaxAttempts()),
			timeText(st.GetStartTime()),
			timeText(st.GetEndTime()),
			st.GetCompensation(),
			// A success's note (a decommission skipped) where a fault would be.
			cmp.Or(faultText(st.GetError()), st.GetNote()),
		})
	}
	return writeTable(w, []string{"STEP", "STATE", "HOST", "ATTEMPT", "STARTED", "ENDED", "UNDO", "ERROR"}, rows)
}

// attemptText shows "attempt/max", or nothing for a step not started yet.
func attemptText(attempt, maxAttempts int32) string {
	switch {
	case attempt <= 0:
		return ""
	case maxAttempts <= 0:
		return fmt.Sprint(attempt)
	}
	return fmt.Sprintf("%d/%d", attempt, maxAttempts)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printHosts(w io.Writer, f outFmt, hosts []*flotillav1.Host) error {
	if f.document() {
		return writeDoc(w, f, hosts)
	}
	rows := make([][]string, 0, len(hosts))
	for _, h := range hosts {
		used, capa := h.GetAllocated(), h.GetCapacity()
		rows = append(rows, []string{
			h.GetId(),
			enumName(h.GetStatus(), "HOST_STATUS_"),
			h.GetHypervisorKind(),
			fmt.Sprintf("%d/%d", used.GetVcpus(), capa.GetVcpus()),
			fmt.Sprintf("%d/%d", used.GetMemoryMib(), capa.GetMemoryMib()),
			fmt.Sprintf("%d/%d", used.GetDiskGib(), capa.GetDiskGib()),
			fmt.Sprint(h.GetInstanceCount()),
			fmt.Sprint(len(h.GetOrphanDomains())),
			fmt.Sprint(h.GetEpoch()),
			h.GetAgentVersion(),
		})
		if f.wide() {
			rows[len(rows)-1] = append(rows[len(rows)-1], labelText(h.GetLabels()), strings.Join(h.GetBridges(), ","), timeText(h.GetRegisterTime()),
				skewText(h.GetClockSkew()), fmt.Sprint(len(h.GetWarnings())))
		}
	}
	head := []string{"ID", "STATUS", "HYPERVISOR", "VCPUS", "MEMORY_MIB", "DISK_GIB", "INSTANCES", "ORPHANS", "EPOCH", "AGENT"}
	if f.wide() {
		head = append(head, "LABELS", "BRIDGES", "REGISTERED", "CLOCK_SKEW", "WARNINGS")
	}
	if err := writeTable(w, head, rows); err != nil {
		return err
	}
	// Warnings under the table, one line each, in every table format:
	// they are what an operator must not miss.
	for _, h := range hosts {
		for _, warn := range h.GetWarnings() {
			if _, err := fmt.Fprintf(w, "warning: host %s: %s\n", escape(h.GetId()), escape(warn)); err != nil {
				return err
			}
		}
	}
	return nil
}

// skewText is a clock skew with its sign ("+1.25s", "-300ms"), or empty
// when it was not measured.
func skewText(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	v := d.AsDuration().Round(time.Millisecond)
	if v >= 0 {
		return "+" + v.String()
	}
	return v.String()
}

// printUsage writes each vocabulary's classes with the time spent in
// each, then the range counted.
func printUsage(w io.Writer, f outFmt, us []*flotillav1.InstanceUsage) error {
	if f.document() {
		return writeDoc(w, f, us)
	}
	var rows [][]string
	for _, u := range us {
		voc := strings.ToLower(enumName(u.GetVocabulary(), "VOCABULARY_"))
		row := func(class string, d *durationpb.Duration) {
			rows = append(rows, []string{voc, class, fmt.Sprintf("%.0f", d.AsDuration().Seconds()), d.AsDuration().Round(time.Second).String()})
		}
		for _, c := range u.GetClasses() {
			row(c.GetBillingClass(), c.GetDuration())
		}
		row("unclassified", u.GetUnclassified())
	}
	if err := writeTable(w, []string{"VOCABULARY", "BILLING_CLASS", "SECONDS", "TIME"}, rows); err != nil || len(us) == 0 {
		return err
	}
	u := us[0]
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "INSTANCE\t%s\n", escape(u.GetInstanceId()))
	fmt.Fprintf(tw, "FROM\t%s\n", dash(timeText(u.GetStartTime())))
	fmt.Fprintf(tw, "TO\t%s\n", dash(timeText(u.GetEndTime())))
	fmt.Fprintf(tw, "METERED_SINCE\t%s\n", dash(timeText(u.GetMeteredSince())))
	fmt.Fprintf(tw, "REVISION\t%d\n", u.GetRevision())
	return tw.Flush()
}

// watchFormat lays out watch lines; the stream is printed as it arrives, so
// the columns have fixed minimum widths instead of being measured.
const watchFormat = "%-10s  %-24s  %-24s  %-18s  %s\n"

func printWatchHeader(w io.Writer, f outFmt, vocabs ...flotillav1.Vocabulary) error {
	if f.document() {
		return nil
	}
	_, err := fmt.Fprintf(w, watchFormat, "REVISION", "ID", "NAME", "STATUS", watchTail("POWER", viewHeaders(vocabs)))
	return err
}

// watchTail appends the vocabulary columns to the last fixed one.
func watchTail(last string, extra []string) string {
	if len(extra) == 0 {
		return last
	}
	return fmt.Sprintf("%-18s  %s", last, strings.Join(extra, "  "))
}

func printWatchEvent(w io.Writer, f outFmt, ev *flotillav1.WatchInstancesResponse, vocabs ...flotillav1.Vocabulary) error {
	if f.document() {
		return writeLine(w, f, ev)
	}
	for _, in := range ev.GetInstances() {
		_, err := fmt.Fprintf(w, watchFormat,
			fmt.Sprint(ev.GetRevision()),
			dash(escape(in.GetId())),
			dash(escape(in.GetName())),
			enumName(in.GetStatus(), "STATUS_"),
			escape(watchTail(enumName(in.GetPowerState(), "POWER_STATE_"), viewColumns(in, vocabs))))
		if err != nil {
			return err
		}
	}
	return nil
}

// labelText shows labels as k=v,k=v in key order.
func labelText(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + labels[k]
	}
	return strings.Join(keys, ",")
}

// placementText shows an instance's placement constraints briefly.
func placementText(p *flotillav1.Placement) string {
	var out []string
	if k := p.GetHypervisorKind(); k != "" {
		out = append(out, "hypervisor="+k)
	}
	if g := p.GetAntiAffinityGroup(); g != "" {
		out = append(out, "anti-affinity="+g)
	}
	if p.GetPreemptible() {
		out = append(out, "preemptible")
	}
	if l := labelText(p.GetHostLabels()); l != "" {
		out = append(out, "host:"+l)
	}
	return strings.Join(out, ",")
}

func copyOrDash(c *flotillav1.CopyProgress) string {
	if c == nil {
		return ""
	}
	return copyText(c)
}
