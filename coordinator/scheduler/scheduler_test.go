package scheduler

import (
	"errors"
	"testing"
)

func TestPlace(t *testing.T) {
	big := Resources{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}
	cases := []struct {
		name  string
		req   Resources
		hosts []Host
		want  string
	}{
		{"spread to most free memory", Resources{1, 512, 1}, []Host{
			{ID: "a", Ready: true, Capacity: big, Allocated: Resources{1, 4096, 0}},
			{ID: "b", Ready: true, Capacity: big, Allocated: Resources{1, 1024, 0}},
		}, "b"},
		{"skips hosts not ready", Resources{1, 512, 1}, []Host{
			{ID: "a", Ready: false, Capacity: big},
			{ID: "b", Ready: true, Capacity: big, Allocated: Resources{1, 4096, 0}},
		}, "b"},
		{"vcpu exhausted", Resources{2, 512, 1}, []Host{{ID: "a", Ready: true, Capacity: big, Allocated: Resources{7, 0, 0}}}, ""},
		{"memory exhausted", Resources{1, 4097, 1}, []Host{{ID: "a", Ready: true, Capacity: big, Allocated: Resources{0, 4096, 0}}}, ""},
		{"disk exhausted", Resources{1, 1, 51}, []Host{{ID: "a", Ready: true, Capacity: big, Allocated: Resources{0, 0, 50}}}, ""},
		{"exact fit", Resources{8, 8192, 100}, []Host{{ID: "a", Ready: true, Capacity: big}}, "a"},
		{"unlimited disk when capacity unknown", Resources{1, 1, 1000}, []Host{{ID: "a", Ready: true, Capacity: Resources{1, 1, 0}}}, "a"},
		{"tie broken by id", Resources{1, 1, 0}, []Host{{ID: "b", Ready: true, Capacity: big}, {ID: "a", Ready: true, Capacity: big}}, "a"},
		{"no hosts", Resources{1, 1, 0}, nil, ""},
	}
	for _, c := range cases {
		got, err := Place(c.req, c.hosts)
		if c.want == "" {
			if !errors.Is(err, ErrNoHost) {
				t.Errorf("%s: got %q, %v; want ErrNoHost", c.name, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}
