package vocabulary

import (
	"slices"
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// everyInput walks every combination of the facts, unknown values
// included, with every kind of last operation.
func everyInput(f func(Input)) int {
	return everyCombination(
		append(slices.Clone(lifecycle.AllDesired), lifecycle.Desired("bogus")),
		append(slices.Clone(lifecycle.AllOpKinds), lifecycle.OpKind("bogus")),
		append(slices.Clone(lifecycle.AllPowers), lifecycle.Power("bogus")),
		append(slices.Clone(lifecycle.AllResults), lifecycle.Result("bogus")), f)
}

// words is every value a vocabulary may show, per field ("" = status word).
func words(v Vocabulary) map[string][]string {
	out := map[string][]string{"": {Unmapped}}
	for _, s := range Seeds {
		if s.Vocabulary == v {
			out[s.Field] = append(append(out[s.Field], s.Value), s.Variants...)
		}
	}
	return out
}

// TestRenderIsTotal renders every combination of facts in every
// vocabulary: each view has a status word the seed uses (or UNMAPPED),
// carries the canonical status, names only billing classes its seed uses,
// and holds only values the seed spells.
func TestRenderIsTotal(t *testing.T) {
	novaTasks := []string{"", "scheduling", "spawning", "powering-on", "powering-off", "rebooting", "rebooting_hard",
		"pausing", "unpausing", "suspending", "resuming", "deleting", "resize_migrating", "resize_reverting", "resize_confirming",
		"updating_password", "rebuilding", "rescuing", "unrescuing", "image_snapshot", "soft-deleting", "restoring"} // nova/compute/task_states.py
	novaVM := []string{"building", "active", "stopped", "paused", "suspended", "deleted", "error", "resized", "rescued", "soft-delete", ""}
	novaPowers := []string{"0", "1", "3", "4", "6", "7"}
	azurePowers := []string{"", "PowerState/starting", "PowerState/running", "PowerState/stopping", "PowerState/stopped",
		"PowerState/deallocating", "PowerState/deallocated"}
	for _, v := range All {
		allowed := words(v)
		n := everyInput(func(in Input) {
			got := Render(v, in)
			if got.Canonical != lifecycle.Derive(in.Facts) || got.Vocabulary != v {
				t.Fatalf("%s %+v: canonical %s, vocabulary %s", v, in, got.Canonical, got.Vocabulary)
			}
			if !slices.Contains(allowed[""], got.Status) {
				t.Fatalf("%s %+v: status %q is not a word of seed %s", v, in, got.Status, v.Seed())
			}
			if got.Billing != BillingNone && !slices.Contains(v.Classes(), got.Billing) {
				t.Fatalf("%s %+v: billing %q is not a class of seed %s", v, in, got.Billing, v.Seed())
			}
			if !got.Mapped() && (got.Billing != BillingNone || (v != Azure && len(got.Fields) > 0)) {
				t.Fatalf("%s %+v: unmapped view with billing or fields: %+v", v, in, got)
			}
			for _, f := range got.Fields {
				var ok bool
				switch {
				case v == Nova && f.Name == FieldVMState:
					ok = slices.Contains(novaVM, f.Value)
				case v == Nova && f.Name == FieldTaskState:
					ok = f.Value != "" && slices.Contains(novaTasks, f.Value)
				case v == Nova && f.Name == FieldPowerState:
					ok = slices.Contains(novaPowers, f.Value)
				case v == Azure && f.Name == FieldPowerState:
					ok = slices.Contains(azurePowers, f.Value) && f.Value == "PowerState/"+got.Status
				case v == Azure && f.Name == FieldProvisioning:
					ok = slices.Contains(allowed[FieldProvisioning], f.Value)
				case v == Azure && f.Name == FieldOSProvisioning:
					// "OS Provisioning can transition to Failed": the seed's failed.
					ok = slices.Contains(allowed[FieldOSProvisioning], f.Value) || f.Value == provisioningOf+"failed"
				}
				if !ok {
					t.Fatalf("%s %+v: field %s=%q is not one the seed defines", v, in, f.Name, f.Value)
				}
			}
			if again := Render(v, in); !slices.Equal(again.Fields, got.Fields) || again.Status != got.Status {
				t.Fatalf("%s %+v: not deterministic", v, in)
			}
		})
		// 10 power states (one bogus), the 3 up ones with 4 readinesses each.
		// A stop, a delete and a soft delete each with 3 decommissioning
		// facts; no operation, frozen or not.
		if n != (len(lifecycle.AllDesired)+1)*(len(lifecycle.AllOpKinds)+1+3*2+1)*(7+3*4)*6*16*len(lifecycle.AllOpKinds) {
			t.Fatalf("walked %d inputs", n)
		}
	}
}

// TestEveryStatusHasARow holds each table to the canonical statuses: a new
// status cannot be added without saying what each seed calls it.
func TestEveryStatusHasARow(t *testing.T) {
	// UPDATING shows the state underneath; so does VERIFY_RESIZE, but in
	// Nova's words; the decommissioning statuses show the stop or delete
	// they begin, but in RightScale's words.
	rows := len(lifecycle.AllStatuses) - 4
	tables := map[string]int{
		"manage-instance": len(manageInstanceWords), "nova": len(novaRows) - 1, "rightscale": len(rightScaleWords) - 2,
		"azure": len(azurePowerWords), "managed-instance": len(managedInstanceWords),
	}
	for name, n := range tables {
		if n != rows {
			t.Errorf("%s has %d rows for %d statuses", name, n, rows)
		}
	}
	for _, s := range lifecycle.AllStatuses {
		if s == lifecycle.StatusUpdating {
			continue
		}
		if s == lifecycle.StatusVerifyResize {
			if _, ok := novaRows[s]; !ok {
				t.Errorf("nova has no row for %s", s)
			}
			continue
		}
		if s == lifecycle.StatusDecommissioning || s == lifecycle.StatusStrandedDecommissioning {
			if !has(rightScaleWords, s) {
				t.Errorf("rightscale has no row for %s", s)
			}
			continue
		}
		for name, ok := range map[string]bool{
			"manage-instance": has(manageInstanceWords, s), "rightscale": has(rightScaleWords, s),
			"azure": has(azurePowerWords, s), "managed-instance": has(managedInstanceWords, s),
		} {
			if !ok {
				t.Errorf("%s has no row for %s", name, s)
			}
		}
		if _, ok := novaRows[s]; !ok {
			t.Errorf("nova has no row for %s", s)
		}
	}
}

func has(m map[lifecycle.Status]word, s lifecycle.Status) bool { _, ok := m[s]; return ok }

// TestSeedsAreHonest: every seed state said to be reachable is rendered by
// some combination of facts, and no state said to await an operation is
// (when a new operation makes one reachable, its Awaits must go).
func TestSeedsAreHonest(t *testing.T) {
	if len(Seeds) != 63 {
		t.Fatalf("%d seed states, DESIGN.md names 63", len(Seeds))
	}
	shown := make([]bool, len(Seeds))
	for _, v := range All {
		everyInput(func(in Input) {
			got := Render(v, in)
			for i, s := range Seeds {
				if s.Shown(got) {
					shown[i] = true
				}
			}
		})
	}
	for i, s := range Seeds {
		if s.Awaits == "" && !shown[i] {
			t.Errorf("seed %s %q is called reachable but no facts render it", s.Vocabulary.Seed(), s.Word)
		}
		if s.Awaits != "" && shown[i] {
			t.Errorf("seed %s %q is rendered but still said to await %s", s.Vocabulary.Seed(), s.Word, s.Awaits)
		}
	}
}

func in(d lifecycle.Desired, o lifecycle.OpKind, p lifecycle.Power, r lifecycle.Result, last lifecycle.OpKind) Input {
	return Input{Facts: lifecycle.Facts{Desired: d, Op: o, Power: p, Result: r}, LastOp: last}
}

// addressed is in with two NICs.
func addressed(in Input) Input {
	in.Addresses, in.DNSNames = []string{"10.0.0.2", "10.1.0.2"}, []string{"web.lan", "web.db"}
	return in
}

func TestRender(t *testing.T) {
	const (
		run  = lifecycle.DesiredRunning
		stop = lifecycle.DesiredStopped
		del  = lifecycle.DesiredDeleted
		ok   = lifecycle.ResultSucceeded
	)
	cases := []struct {
		v      Vocabulary
		in     Input
		status string
		fields []Field
		bill   Billing
	}{
		{ManageInstance, in(run, lifecycle.OpCreate, lifecycle.PowerNone, lifecycle.ResultNone, ""), "starting", nil, ""},
		{ManageInstance, in(stop, lifecycle.OpNone, lifecycle.PowerShutOff, ok, lifecycle.OpStop), "offline", nil, ""},
		{ManageInstance, in(run, lifecycle.OpPause, lifecycle.PowerRunning, ok, ""), Unmapped, nil, ""},
		{Nova, in(run, lifecycle.OpNone, lifecycle.PowerRunning, ok, lifecycle.OpCreate), "ACTIVE",
			[]Field{{"vm_state", "active"}, {"power_state", "1"}}, ""},
		{Nova, in(run, lifecycle.OpRestart, lifecycle.PowerRunning, ok, lifecycle.OpCreate), "REBOOT",
			[]Field{{"vm_state", "active"}, {"task_state", "rebooting"}, {"power_state", "1"}}, ""},
		{Nova, in(del, lifecycle.OpDelete, lifecycle.PowerShutOff, ok, lifecycle.OpStop), "STOPPED",
			[]Field{{"vm_state", "stopped"}, {"task_state", "deleting"}, {"power_state", "4"}}, ""},
		// Shut off behind Nova's back: still ACTIVE, power_state SHUTDOWN, as Nova shows it until its sync.
		{Nova, in(run, lifecycle.OpNone, lifecycle.PowerShutOff, ok, lifecycle.OpCreate), "ACTIVE",
			[]Field{{"vm_state", "active"}, {"power_state", "4"}}, ""},
		{RightScale, in(run, lifecycle.OpNone, lifecycle.PowerRunning, ok, lifecycle.OpCreate), "operational", nil, BillingInstanceUsage},
		{RightScale, in(stop, lifecycle.OpNone, lifecycle.PowerShutOff, ok, lifecycle.OpStop), "stopped", nil, BillingStorageOnly},
		{Azure, in(run, lifecycle.OpCreate, lifecycle.PowerNone, lifecycle.ResultNone, ""), "starting",
			[]Field{{"provisioning", "ProvisioningState/creating"}, {"power_state", "PowerState/starting"}}, BillingNotBilled},
		{Azure, in(stop, lifecycle.OpStop, lifecycle.PowerRunning, ok, lifecycle.OpCreate), "stopping",
			[]Field{{"provisioning", "ProvisioningState/updating"}, {"power_state", "PowerState/stopping"}}, BillingHardwareAndSoftware},
		{Azure, in(run, lifecycle.OpNone, lifecycle.PowerRunning, lifecycle.ResultCanceled, lifecycle.OpStop), "running",
			[]Field{{"provisioning", "ProvisioningState/canceled"}, {"power_state", "PowerState/running"}}, BillingHardwareAndSoftware},
		{Azure, in(run, lifecycle.OpPause, lifecycle.PowerRunning, ok, lifecycle.OpCreate), Unmapped,
			[]Field{{"provisioning", "ProvisioningState/updating"}}, ""},
		{ManagedInstance, in(run, lifecycle.OpNone, lifecycle.PowerNoDomain, lifecycle.ResultRolledBack, lifecycle.OpCreate), "CREATEFAILED", nil, ""},
		// A model update shows the state underneath; Azure says it is updating.
		{Azure, in(run, lifecycle.OpUpdate, lifecycle.PowerRunning, ok, lifecycle.OpCreate), "running",
			[]Field{{"provisioning", "ProvisioningState/updating"}, {"power_state", "PowerState/running"}}, BillingHardwareAndSoftware},
		{Nova, in(stop, lifecycle.OpUpdate, lifecycle.PowerShutOff, ok, lifecycle.OpStop), "STOPPED",
			[]Field{{"vm_state", "stopped"}, {"power_state", "4"}}, ""},
		{ManageInstance, in(stop, lifecycle.OpUpdate, lifecycle.PowerShutOff, ok, lifecycle.OpStop), "offline", nil, ""},
		{ManagedInstance, in(run, lifecycle.OpNone, lifecycle.PowerShutOff, ok, lifecycle.OpCreate), "ERROR", nil, ""},
		{ManagedInstance, in(run, lifecycle.OpNone, lifecycle.PowerRunning, lifecycle.ResultFailed, lifecycle.OpRestart), "ERROR", nil, ""},
		// Seed 002: addresses and DNS names from pending on, removed once terminated.
		{RightScale, addressed(in(run, lifecycle.OpCreate, lifecycle.PowerNone, lifecycle.ResultNone, "")), "pending",
			[]Field{{"private_ip_addresses", "10.0.0.2,10.1.0.2"}, {"private_dns_names", "web.lan,web.db"}}, BillingNotCharged},
		{RightScale, addressed(in(run, lifecycle.OpNone, lifecycle.PowerRunning, ok, lifecycle.OpCreate)), "operational",
			[]Field{{"private_ip_addresses", "10.0.0.2,10.1.0.2"}, {"private_dns_names", "web.lan,web.db"}}, BillingInstanceUsage},
		{RightScale, addressed(in(del, lifecycle.OpNone, lifecycle.PowerNoDomain, ok, lifecycle.OpDelete)), "terminated", nil, BillingNotCharged},
		{Nova, addressed(in(run, lifecycle.OpNone, lifecycle.PowerRunning, ok, lifecycle.OpCreate)), "ACTIVE",
			[]Field{{"vm_state", "active"}, {"power_state", "1"}}, ""},
	}
	for _, c := range cases {
		got := Render(c.v, c.in)
		if got.Status != c.status || !slices.Equal(got.Fields, c.fields) || got.Billing != c.bill {
			t.Errorf("%s %+v: got %s %v %q, want %s %v %q", c.v, c.in, got.Status, got.Fields, got.Billing, c.status, c.fields, c.bill)
		}
	}
}

// BillingClass is Render's billing for every combination of facts, in
// every vocabulary: the state meters with the one, the API shows the other.
func TestBillingClassIsRenderBilling(t *testing.T) {
	for _, v := range All {
		everyInput(func(in Input) {
			if got, want := BillingClass(v, in), Render(v, in).Billing; got != want {
				t.Fatalf("%s %+v: BillingClass %q, Render's billing %q", v, in, got, want)
			}
		})
	}
	if got := Metered(); !slices.Equal(got, []Vocabulary{RightScale, Azure}) {
		t.Fatalf("metered vocabularies %v, want rightscale and azure", got)
	}
}

// TestDecommissioningWords: RightScale shows a stop's or a delete's
// decommissioning in its own words; every other seed shows the stop or
// delete it begins, exactly as it shows that stop or delete.
func TestDecommissioningWords(t *testing.T) {
	for _, c := range []struct {
		op      lifecycle.OpKind
		desired lifecycle.Desired
		dc      lifecycle.Decommission
		want    string
	}{
		{lifecycle.OpStop, lifecycle.DesiredStopped, lifecycle.DecomRunning, "decommissioning"},
		{lifecycle.OpStop, lifecycle.DesiredStopped, lifecycle.DecomFailed, "stranded in decommissioning"},
		{lifecycle.OpDelete, lifecycle.DesiredDeleted, lifecycle.DecomRunning, "decommissioning"},
		{lifecycle.OpDelete, lifecycle.DesiredDeleted, lifecycle.DecomFailed, "stranded in decommissioning"},
	} {
		in := Input{Facts: lifecycle.Facts{Desired: c.desired, Op: c.op, Power: lifecycle.PowerRunning,
			Result: lifecycle.ResultSucceeded, Decommission: c.dc}, LastOp: lifecycle.OpCreate,
			Readiness: lifecycle.ReadinessOperational}
		plain := in
		plain.Decommission = lifecycle.DecomNone
		for _, v := range All {
			got, under := Render(v, in), Render(v, plain)
			if got.Canonical == under.Canonical {
				t.Fatalf("%s %s: canonical %s", c.op, c.dc, got.Canonical)
			}
			if v == RightScale {
				if got.Status != c.want || got.Billing != BillingInstanceUsage {
					t.Errorf("rightscale %s %s: %q (%s), want %q", c.op, c.dc, got.Status, got.Billing, c.want)
				}
				continue
			}
			if got.Status != under.Status || !slices.Equal(got.Fields, under.Fields) || got.Billing != under.Billing {
				t.Errorf("%s %s %s: %+v, want as %s: %+v", v, c.op, c.dc, got, under.Canonical, under)
			}
		}
	}
}
