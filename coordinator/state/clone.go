package state

import (
	"maps"
	"slices"
)

// Committed records are immutable by construction: every Tx getter and
// every store read hands out a deep copy, and every Put stores one, so
// neither what a reader holds nor what a writer passed in reaches a
// committed record. Readers may then share committed records freely (the
// history, views for snapshots, interned step arrays) without copying.
// Each clone below copies every map, slice and pointer its type reaches;
// TestClonesShareNothing checks that by reflection, so a field added later
// without its copy fails there.

func (i *Instance) clone() *Instance {
	c := *i
	c.Copy = clonePtr(i.Copy)
	c.Fault = clonePtr(i.Fault)
	c.Resize = clonePtr(i.Resize)
	c.Labels = maps.Clone(i.Labels)
	c.Placement.Labels = maps.Clone(i.Placement.Labels)
	c.Placement.Bridges = slices.Clone(i.Placement.Bridges)
	c.NICs = slices.Clone(i.NICs)
	c.SSHKeys = slices.Clone(i.SSHKeys)
	return &c
}

func (o *Operation) clone() *Operation { return o.cloneWith(CloneSteps(o.Steps)) }

// cloneWith is clone with steps for the copy's steps.
func (o *Operation) cloneWith(steps []Step) *Operation {
	c := *o
	c.Fault = clonePtr(o.Fault)
	c.Steps = steps
	c.Update = o.Update.clone()
	c.Resize = clonePtr(o.Resize)
	c.RequestedBy = o.RequestedBy.clone()
	c.Copy = clonePtr(o.Copy)
	return &c
}

// CloneSteps copies steps with their faults and undo chains. The steps
// and their undo steps share one allocation (every operation's plan is
// copied, and most steps have an undo).
func CloneSteps(steps []Step) []Step {
	if steps == nil {
		return nil
	}
	undos := 0
	for i := range steps {
		if steps[i].Undo != nil {
			undos++
		}
	}
	all := make([]Step, len(steps)+undos)
	c, u := all[:len(steps):len(steps)], all[len(steps):] // an append to c copies
	for i := range steps {
		c[i] = steps[i]
		c[i].Fault = clonePtr(steps[i].Fault)
		if steps[i].Undo != nil {
			u[0] = steps[i].Undo.clone()
			c[i].Undo, u = &u[0], u[1:]
		}
	}
	return c
}

func (s *Step) clone() Step {
	c := *s
	c.Fault = clonePtr(s.Fault)
	if s.Undo != nil {
		u := s.Undo.clone()
		c.Undo = &u
	}
	return c
}

// EqualSteps reports whether a and b are equal, faults and undo chains
// included (what reflect.DeepEqual says, at a fraction of the cost).
func EqualSteps(a, b []Step) bool {
	return slices.EqualFunc(a, b, func(x, y Step) bool { return x.equal(&y) })
}

func (s *Step) equal(t *Step) bool {
	x, y := *s, *t
	x.Fault, x.Undo, y.Fault, y.Undo = nil, nil, nil, nil
	if x != y || !equalPtr(s.Fault, t.Fault) {
		return false
	}
	if s.Undo == nil || t.Undo == nil {
		return s.Undo == t.Undo
	}
	return s.Undo.equal(t.Undo)
}

func equalPtr[T comparable](a, b *T) bool {
	return a == b || (a != nil && b != nil && *a == *b)
}

func (u *ModelUpdate) clone() *ModelUpdate {
	if u == nil {
		return nil
	}
	c := *u
	c.Name = clonePtr(u.Name)
	c.Labels = maps.Clone(u.Labels)
	c.Recovery = clonePtr(u.Recovery)
	return &c
}

func (c *Caller) clone() *Caller {
	if c == nil {
		return nil
	}
	d := *c
	d.Roles = slices.Clone(c.Roles)
	return &d
}

func (h *Host) clone() *Host {
	c := *h
	c.Orphans = slices.Clone(h.Orphans)
	c.Labels = maps.Clone(h.Labels)
	c.Bridges = slices.Clone(h.Bridges)
	return &c
}

// clonePtr copies what p points to, for types without maps, slices or
// pointers inside.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
