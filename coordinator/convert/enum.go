package convert

import "fmt"

// enum pairs each value of a domain enum with its wire value. It is built
// from one table and read both ways, so the two directions cannot drift.
type enum[D, W comparable] struct {
	toPB   map[D]W
	fromPB map[W]D
}

// newEnum builds an enum from its table. Two domain values with one wire
// value would make reading back ambiguous: that is a programming error,
// caught when the package loads.
func newEnum[D, W comparable](table map[D]W) enum[D, W] {
	e := enum[D, W]{toPB: table, fromPB: make(map[W]D, len(table))}
	for d, w := range table {
		if prev, dup := e.fromPB[w]; dup {
			panic(fmt.Sprintf("convert: %v and %v both map to %v", prev, d, w))
		}
		e.fromPB[w] = d
	}
	return e
}

// pb is d's wire value; a value the table does not know is the wire zero
// (UNSPECIFIED).
func (e enum[D, W]) pb(d D) W { return e.toPB[d] }

// domain is w's domain value, and whether the table knows w.
func (e enum[D, W]) domain(w W) (D, bool) {
	d, ok := e.fromPB[w]
	return d, ok
}
