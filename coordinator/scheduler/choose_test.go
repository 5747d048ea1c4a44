package scheduler

import "testing"

func TestChoose(t *testing.T) {
	h := func(id string, mem, used uint64) Host { return alloc(host(id, 16, mem, 0), 0, used, 0) }
	pack := Policy{Pack: true}
	cases := []struct {
		name   string
		r      Request
		sample []Host
		p      Policy
		pick   int    // what pick returns
		wantN  int    // the n pick is asked for (0: not asked)
		want   string // "" means ok false
	}{
		{"empty sample", req(1, 1024, 0), nil, Policy{}, 0, 0, ""},
		{"none fits", req(1, 1024, 0), []Host{h("a", 1024, 512), h("b", 1024, 1024)}, Policy{}, 0, 0, ""},
		{"spread: one clearly best", req(1, 1024, 0), []Host{h("a", 10240, 5120), h("b", 10240, 0), h("c", 10240, 2048)}, Policy{}, 0, 1, "b"},
		// Shares after: a 2048/102400 = 2.0%, b 1024/102400 = 1.0%, c 3072/102400 = 3.0%.
		{"spread: near-equal within a point, first", req(1, 1024, 0), []Host{h("a", 102400, 1024), h("b", 102400, 0), h("c", 102400, 2048)}, Policy{}, 0, 2, "a"},
		{"spread: near-equal within a point, second", req(1, 1024, 0), []Host{h("a", 102400, 1024), h("b", 102400, 0), h("c", 102400, 2048)}, Policy{}, 1, 2, "b"},
		{"spread: ties all near", req(1, 1024, 0), []Host{h("a", 4096, 0), h("b", 4096, 0), h("c", 4096, 0)}, Policy{}, 2, 3, "c"},
		{"spread: shares, not free MiB", req(1, 1024, 0), []Host{h("big", 65536, 32768), h("small", 8192, 0)}, Policy{}, 0, 1, "small"},
		{"pack: least free after", req(1, 1024, 0), []Host{h("a", 10240, 5120), h("b", 10240, 8192), h("c", 10240, 0)}, pack, 0, 1, "b"},
		{"pack: only exact ties are near", req(1, 1024, 0), []Host{h("a", 102400, 8192), h("b", 102400, 8192), h("c", 102400, 7168)}, pack, 1, 2, "b"},
		{"skips what does not fit", Request{Resources: Resources{1, 1024, 0}, Labels: map[string]string{"zone": "b"}},
			[]Host{h("a", 4096, 0), with(h("z", 4096, 3072), func(x *Host) { x.Labels = map[string]string{"zone": "b"} })}, Policy{}, 0, 1, "z"},
		{"never preempts", req(1, 1024, 0), []Host{with(h("a", 1024, 1024), func(x *Host) { x.Preemptible = []Placed{{ID: "p", Resources: Resources{1, 1024, 0}}} })},
			Policy{}, 0, 0, ""},
	}
	for _, c := range cases {
		asked := 0
		got, ok := Choose(c.r, c.sample, c.p, func(n int) int { asked = n; return c.pick })
		if c.want == "" {
			if ok || asked != 0 {
				t.Errorf("%s: got %q (asked pick(%d)), want none", c.name, got, asked)
			}
			continue
		}
		if !ok || got != c.want || asked != c.wantN {
			t.Errorf("%s: got %q %v after pick(%d), want %q after pick(%d)", c.name, got, ok, asked, c.want, c.wantN)
		}
	}
}
