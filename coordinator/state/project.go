package state

import (
	"fmt"
	"sort"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// DefaultProject is the project of instances that name none: those of
// clients that know no projects, and every instance older than them.
const DefaultProject = "default"

// Quota bounds what a project's instances may take together; 0 is no bound.
type Quota struct {
	Instances uint32 `json:"instances,omitempty"`
	VCPUs     uint32 `json:"vcpus,omitempty"`
	MemoryMiB uint64 `json:"memory_mib,omitempty"`
	DiskGiB   uint64 `json:"disk_gib,omitempty"`
}

// Project is one tenant's record: its quota, and, when billed, its balance
// and the price of its instances' usage.
type Project struct {
	Name  string `json:"name"`
	Quota Quota  `json:"quota"`
	// Billed: usage is charged against Balance (else it is only metered).
	Billed bool `json:"billed,omitempty"`
	// BalanceMilli is in thousandths of a unit, so charges of a few
	// seconds' usage are not lost to rounding.
	BalanceMilli int64 `json:"balance_milli"`
	// PricesMilli is the price of one vCPU-hour in each billing class
	// (vocabulary.Billing as text), in thousandths of a unit.
	PricesMilli map[string]int64 `json:"prices_milli,omitempty"`
	// Frozen: its instances are paused and user actions refused; by the
	// balance running out, or by an admin (FrozenByAdmin), in which case
	// only an admin's unfreeze thaws it.
	Frozen        bool `json:"frozen,omitempty"`
	FrozenByAdmin bool `json:"frozen_by_admin,omitempty"`
	// ChargedThrough is the end of the usage already charged.
	ChargedThrough time.Time `json:"charged_through"`
	CreateTime     time.Time `json:"create_time"`
	CreateRev      int64     `json:"create_rev"`
}

// ProjectOf is an instance's project, the default one for those that name none.
func ProjectOf(i *Instance) string {
	if i.Project == "" {
		return DefaultProject
	}
	return i.Project
}

// Use is what a project's instances take, as counted against its quota.
type Use struct {
	Instances uint32
	VCPUs     uint32
	MemoryMiB uint64
	DiskGiB   uint64
}

// Add returns the use with one more instance of shape s.
func (u Use) Add(s Spec) Use {
	return Use{Instances: u.Instances + 1, VCPUs: u.VCPUs + s.VCPUs, MemoryMiB: u.MemoryMiB + s.MemoryMiB, DiskGiB: u.DiskGiB + s.DiskGiB}
}

// Reshape returns the use with one instance's shape from changed to to.
func (u Use) Reshape(from, to Spec) Use {
	u.VCPUs = u.VCPUs - from.VCPUs + to.VCPUs
	u.MemoryMiB = u.MemoryMiB - from.MemoryMiB + to.MemoryMiB
	u.DiskGiB = u.DiskGiB - from.DiskGiB + to.DiskGiB
	return u
}

// Exceeded names the first bound of q that u passes ("" if none).
func (q Quota) Exceeded(u Use) string {
	switch {
	case q.Instances > 0 && u.Instances > q.Instances:
		return fmt.Sprintf("instances (%d of %d)", u.Instances, q.Instances)
	case q.VCPUs > 0 && u.VCPUs > q.VCPUs:
		return fmt.Sprintf("vcpus (%d of %d)", u.VCPUs, q.VCPUs)
	case q.MemoryMiB > 0 && u.MemoryMiB > q.MemoryMiB:
		return fmt.Sprintf("memory_mib (%d of %d)", u.MemoryMiB, q.MemoryMiB)
	case q.DiskGiB > 0 && u.DiskGiB > q.DiskGiB:
		return fmt.Sprintf("disk_gib (%d of %d)", u.DiskGiB, q.DiskGiB)
	}
	return ""
}

// countsAgainstQuota: an instance takes its project's quota until its
// delete is accepted.
func countsAgainstQuota(i *Instance) bool { return i.Desired != lifecycle.DesiredDeleted }

// projectUse is the index of what each project's instances take.
type projectUse struct {
	ignores
	use map[string]Use
}

func (x *projectUse) reset(int64) { x.use = map[string]Use{} }

func (x *projectUse) instance(old, now *Instance, _ int64) {
	if old != nil && countsAgainstQuota(old) {
		p := ProjectOf(old)
		u := x.use[p]
		u.Instances--
		u.VCPUs -= old.Spec.VCPUs
		u.MemoryMiB -= old.Spec.MemoryMiB
		u.DiskGiB -= old.Spec.DiskGiB
		x.use[p] = u
	}
	if now != nil && countsAgainstQuota(now) {
		p := ProjectOf(now)
		x.use[p] = x.use[p].Add(now.Spec)
	}
}

// Project returns a project's record.
func (s *Store) Project(name string) (Project, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.projects[name]
	if !ok {
		return Project{}, fmt.Errorf("project %q: %w", name, ErrNotFound)
	}
	return p.clone(), nil
}

// Projects returns every project, ordered by name, and the revision read.
func (s *Store) Projects() ([]Project, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Project, 0, len(s.projects))
	for _, p := range s.projects {
		out = append(out, p.clone())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, s.rev
}

// ProjectUse is what a project's instances take now.
func (s *Store) ProjectUse(name string) Use {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.projUse.use[name]
}

func (p *Project) clone() Project {
	c := *p
	if p.PricesMilli != nil {
		c.PricesMilli = make(map[string]int64, len(p.PricesMilli))
		for k, v := range p.PricesMilli {
			c.PricesMilli[k] = v
		}
	}
	return c
}

// Project returns a project's record, staged change included.
func (tx *Tx) Project(name string) (Project, bool) {
	if p, ok := tx.projects[name]; ok {
		return p.clone(), true
	}
	p, ok := tx.s.projects[name]
	if !ok {
		return Project{}, false
	}
	return p.clone(), true
}

// PutProject stages a project's record.
func (tx *Tx) PutProject(p Project) { c := p.clone(); tx.projects[p.Name] = &c }

// ProjectUse is what a project's instances take, as committed. Only a
// create adds to it, one per entry, so the committed index is what a
// create must be checked against.
func (tx *Tx) ProjectUse(name string) Use { return tx.s.projUse.use[name] }

// ProjectInstances returns the committed instances of a project that are
// not deleted, ordered by id, for the caller to change and put.
func (tx *Tx) ProjectInstances(name string) []*Instance {
	var out []*Instance
	for _, i := range tx.s.instances {
		if ProjectOf(i) == name && i.Status() != lifecycle.StatusDeleted {
			if staged, ok := tx.instances[i.ID]; ok {
				out = append(out, staged.clone())
				continue
			}
			c := i.clone()
			out = append(out, c)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}
