package vocabulary

import (
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"strings"
)

// Vocabulary names one seed system's way of describing instances.
type Vocabulary string

const (
	ManageInstance  Vocabulary = "manage-instance"  // seed 000: a Xen "manage-instance" cloud
	Nova            Vocabulary = "nova"             // seed 001: OpenStack Nova
	RightScale      Vocabulary = "rightscale"       // seed 002: RightScale server states
	Azure           Vocabulary = "azure"            // seed 003: Azure VM power and provisioning states
	ManagedInstance Vocabulary = "managed-instance" // seed 004: a managed-service instance table
)

// All lists every vocabulary in seed order.
var All = []Vocabulary{ManageInstance, Nova, RightScale, Azure, ManagedInstance}

// Seed is the seed document a vocabulary comes from.
func (v Vocabulary) Seed() string {
	switch v {
	case ManageInstance:
		return "000"
	case Nova:
		return "001"
	case RightScale:
		return "002"
	case Azure:
		return "003"
	case ManagedInstance:
		return "004"
	}
	return ""
}

// Unmapped is the status word of a view whose seed has no word for the
// instance's state; the view's Canonical says what the state is.
const Unmapped = "UNMAPPED"

// Field names carried by views besides the status word.
const (
	FieldVMState        = "vm_state"     // Nova
	FieldTaskState      = "task_state"   // Nova; absent when no task runs
	FieldPowerState     = "power_state"  // Nova: the numeric power state; Azure: the PowerState/… code
	FieldProvisioning   = "provisioning" // Azure: the ProvisioningState/… code
	FieldOSProvisioning = "os_provisioning"
	// RightScale: "By the end of the 'pending' phase, the instance will have
	// a public and private IP address, DNS Name"; once terminated they "will
	// be removed". Flotilla's addresses are the private ones (comma-separated).
	FieldPrivateIPAddresses = "private_ip_addresses"
	FieldPrivateDNSNames    = "private_dns_names"
)

// Billing is a billing class a seed names for a state.
type Billing string

// Billing classes. Seed 002 (RightScale on EC2) distinguishes instance usage
// from volumes only; seed 003 (Azure) hardware and software from hardware
// only. An empty class: the seed says nothing about billing in that state.
const (
	BillingNone Billing = ""
	// Seed 002.
	BillingInstanceUsage Billing = "instance-usage" // "charge you instance usage costs"
	BillingStorageOnly   Billing = "storage-only"   // "no longer being charged for instance usage", volumes charged
	BillingNotCharged    Billing = "not-charged"    // "you will not be charged"
	// Seed 003.
	BillingHardwareAndSoftware Billing = "hardware-and-software" // "Billed (Hardware + Software)"
	BillingHardwareOnly        Billing = "hardware-only"         // "Billed (Hardware only)"
	BillingNotBilled           Billing = "not-billed"            // "Not Billed"
)

// Classes lists the billing classes a vocabulary uses (none for most).
func (v Vocabulary) Classes() []Billing {
	switch v {
	case RightScale:
		return []Billing{BillingInstanceUsage, BillingStorageOnly, BillingNotCharged}
	case Azure:
		return []Billing{BillingHardwareAndSoftware, BillingHardwareOnly, BillingNotBilled}
	}
	return nil
}

// Input is what a view is derived from: the four facts, and the kind of
// the last operation that ended (OpNone if none has).
type Input struct {
	lifecycle.Facts
	LastOp lifecycle.OpKind
	// Addresses and DNSNames are the instance's, one per NIC.
	Addresses, DNSNames []string
	// Readiness is whether its running guest is ready for work.
	Readiness lifecycle.Readiness
}

// Field is one named value of a view, besides its status word.
type Field struct {
	Name, Value string
}

// View is an instance's state in one vocabulary.
type View struct {
	Vocabulary Vocabulary
	Status     string           // the seed's word, or Unmapped
	Canonical  lifecycle.Status // Flotilla's own status, always set
	Fields     []Field          // in a fixed order per vocabulary
	Billing    Billing
}

// Mapped reports whether the seed has a word for the state.
func (v View) Mapped() bool { return v.Status != Unmapped }

// Field returns the named field's value, "" if absent.
func (v View) Field(name string) string {
	for _, f := range v.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// renderer derives one vocabulary's view from the input and its canonical status.
type renderer func(in Input, s lifecycle.Status) View

var renderers = map[Vocabulary]renderer{
	ManageInstance:  manageInstance,
	Nova:            nova,
	RightScale:      rightScale,
	Azure:           azure,
	ManagedInstance: managedInstance,
}

// Render derives the instance's view in vocabulary v. An unknown
// vocabulary gives an unmapped view.
//
// A model update (UPDATING) changes nothing the seeds' status words
// describe: each seed shows the state the instance is in underneath, and
// Azure adds its provisioning state "updating" (from the operation in the
// input).
func Render(v Vocabulary, in Input) View {
	s := lifecycle.Derive(in.Facts)
	r, ok := renderers[v]
	if !ok {
		return View{Vocabulary: v, Status: Unmapped, Canonical: s}
	}
	out := r(in, shown(v, in, s))
	out.Vocabulary, out.Canonical = v, s
	if v == RightScale && len(in.Addresses) > 0 && s != lifecycle.StatusDeleted {
		out.Fields = append(out.Fields, Field{FieldPrivateIPAddresses, strings.Join(in.Addresses, ",")},
			Field{FieldPrivateDNSNames, strings.Join(in.DNSNames, ",")})
	}
	if out.Status == "" {
		out.Status = Unmapped
	}
	return out
}

// shown is the status the seeds' words describe in vocabulary v: the
// canonical status s, or under a model update the state underneath it; an
// unconfirmed resize is, but in Nova's words, the state it is in
// (running, or offline after a resize from offline: seed 000); and
// decommissioning, a word only RightScale has, is elsewhere the stop or
// delete it is the first part of (STOPPING or DELETING).
func shown(v Vocabulary, in Input, s lifecycle.Status) lifecycle.Status {
	switch {
	case (s == lifecycle.StatusDecommissioning || s == lifecycle.StatusStrandedDecommissioning) && v != RightScale:
		f := in.Facts
		f.Decommission = lifecycle.DecomNone
		return lifecycle.Derive(f)
	case s != lifecycle.StatusUpdating && (s != lifecycle.StatusVerifyResize || v == Nova):
		return s
	}
	f := in.Facts
	f.Op = lifecycle.OpNone
	if v != Nova {
		f.Unconfirmed = false
	}
	return lifecycle.Derive(f)
}

// BillingClass is Render(v, in).Billing, found without rendering the view:
// the state records every instance's class in each vocabulary at every
// commit that changes its facts, and the fields a view builds (Azure's
// codes) were most of what rendering cost there.
func BillingClass(v Vocabulary, in Input) Billing {
	switch v {
	case RightScale:
		return fromTable(rightScaleWords, shown(v, in, lifecycle.Derive(in.Facts))).Billing
	case Azure:
		return fromWord(azureWord(in, shown(v, in, lifecycle.Derive(in.Facts)))).Billing
	}
	return Render(v, in).Billing
}

// Metered lists the vocabularies that name billing classes, in seed order:
// the ones whose classes the state records over time.
func Metered() []Vocabulary {
	var out []Vocabulary
	for _, v := range All {
		if len(v.Classes()) > 0 {
			out = append(out, v)
		}
	}
	return out
}

// word is a table row: the seed's word for a canonical status and the
// billing class it names there.
type word struct {
	Status  string
	Billing Billing
}

// fromTable renders a table row; a status with no row is unmapped.
func fromTable(t map[lifecycle.Status]word, s lifecycle.Status) View { return fromWord(t[s]) }

// fromWord renders a row; an empty one is unmapped.
func fromWord(w word) View {
	if w.Status == "" {
		return View{Status: Unmapped}
	}
	return View{Status: w.Status, Billing: w.Billing}
}
