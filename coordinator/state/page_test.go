package state

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func storeWith(tb testing.TB, n int, rng *rand.Rand) *Store {
	tb.Helper()
	s := New(0)
	if err := s.Update(time.Unix(0, 0), func(tx *Tx) error {
		for _, k := range rng.Perm(n) {
			tx.PutInstance(&Instance{ID: fmt.Sprintf("i-%06d", k), Name: fmt.Sprint(k % 7), HostID: "h", Spec: Spec{VCPUs: 1, MemoryMiB: 512, Image: "img"}})
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return s
}

// Paging with InstancesPage yields exactly the kept instances, in id
// order, each once, whatever the page size.
func TestInstancesPage(t *testing.T) {
	for _, c := range []struct {
		n, limit int
		keep     func(*Instance) bool
	}{
		{0, 10, func(*Instance) bool { return true }},
		{1, 1, func(*Instance) bool { return true }},
		{10, 10, func(*Instance) bool { return true }},
		{11, 10, func(*Instance) bool { return true }},
		{1000, 7, func(*Instance) bool { return true }},
		{1000, 100, func(i *Instance) bool { return i.Name == "3" }},
		{1000, 1000, func(i *Instance) bool { return i.Name != "3" }},
		{100, 5, func(*Instance) bool { return false }},
	} {
		s := storeWith(t, c.n, rand.New(rand.NewPCG(uint64(c.n), uint64(c.limit))))
		all, _ := s.Instances()
		var want, got []string
		for _, i := range all {
			if c.keep(&i) {
				want = append(want, i.ID)
			}
		}
		pages := 0
		for after := ""; ; pages++ {
			page, more, _ := s.InstancesPage(after, c.limit, c.keep)
			if len(page) > c.limit || (more && len(page) != c.limit) {
				t.Fatalf("n %d limit %d: a page of %d, more %v", c.n, c.limit, len(page), more)
			}
			for _, i := range page {
				got = append(got, i.ID)
			}
			if !more {
				break
			}
			after = page[len(page)-1].ID
		}
		if !slices.Equal(got, want) {
			t.Errorf("n %d limit %d: paged %d ids in %d pages, want %d in order", c.n, c.limit, len(got), pages+1, len(want))
		}
	}
}

// Listing 100,000 instances in pages of 1,000: every page copied every
// record before (Instances), only its own now (InstancesPage).
func BenchmarkList100k(b *testing.B) {
	s := storeWith(b, 100000, rand.New(rand.NewPCG(1, 2)))
	keep := func(*Instance) bool { return true }
	b.Run("InstancesPage", func(b *testing.B) {
		for range b.N {
			n := 0
			for after := ""; ; {
				page, more, _ := s.InstancesPage(after, 1000, keep)
				n += len(page)
				if !more {
					break
				}
				after = page[len(page)-1].ID
			}
			if n != 100000 {
				b.Fatal(n)
			}
		}
	})
	b.Run("Instances-per-page(before)", func(b *testing.B) {
		for range b.N {
			n := 0
			for after := ""; ; {
				all, _ := s.Instances()
				k, _ := slices.BinarySearchFunc(all, after, func(i Instance, id string) int {
					return cmpString(i.ID, id)
				})
				for k < len(all) && all[k].ID <= after {
					k++
				}
				page := all[k:min(len(all), k+1000)]
				n += len(page)
				if len(page) < 1000 || k+1000 == len(all) {
					break
				}
				after = page[len(page)-1].ID
			}
			if n != 100000 {
				b.Fatal(n)
			}
		}
	})
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
