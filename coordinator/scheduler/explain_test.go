package scheduler

import "testing"

func TestExplain(t *testing.T) {
	h := host("h", 4, 8192, 100)
	cases := []struct {
		name  string
		r     Request
		hosts []Host
		p     Policy
		want  string
	}{
		{"no hosts", req(1, 1, 1), nil, Policy{}, "no hosts"},
		{"full and cordoned", req(1, 4096, 1), []Host{alloc(h, 0, 6144, 0), alloc(h, 0, 8000, 0), with(h, func(h *Host) { h.Cordoned = true })}, Policy{},
			"3 hosts: 2 full (memory), 1 cordoned"},
		{"one host", req(1, 1, 1), []Host{with(h, func(h *Host) { h.Ready = false })}, Policy{}, "1 host: 1 not ready"},
		{"mixed shortages", req(2, 4096, 50), []Host{alloc(h, 3, 6144, 0), alloc(h, 0, 6144, 60), alloc(h, 0, 6144, 0)}, Policy{},
			"3 hosts: 3 full (1 vcpu, memory, 1 disk)"},
		{"too small", req(8, 1, 1), []Host{h, alloc(h, 1, 0, 0)}, Policy{}, "2 hosts: 2 too small (vcpu)"},
		{"overcommit makes it full, not too small", req(8, 1, 1), []Host{alloc(h, 1, 0, 0)}, Policy{CPUOvercommit: 2}, "1 host: 1 full (vcpu)"},
		{"kind, labels, group", Request{Kind: "xen", Labels: map[string]string{"zone": "a"}, AntiAffinityGroup: "db"}, []Host{
			h, with(h, func(h *Host) { h.Kind = "xen" }),
			with(h, func(h *Host) {
				h.Kind = "xen"
				h.Labels = map[string]string{"zone": "a"}
				h.Groups = map[string]int{"db": 1}
			}),
		}, Policy{}, "3 hosts: 1 not xen, 1 missing labels, 1 already run group db"},
		{"first reason only", req(100, 1, 1), []Host{with(h, func(h *Host) { h.Ready = false; h.Cordoned = true })}, Policy{}, "1 host: 1 not ready"},
		{"some fit", req(1, 1, 1), []Host{h, with(h, func(h *Host) { h.Cordoned = true })}, Policy{}, "2 hosts: 1 can take it, 1 cordoned"},
	}
	for _, c := range cases {
		if got := Explain(c.r, c.hosts, c.p); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}
