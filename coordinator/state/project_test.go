package state

import (
	"strings"
	"testing"
)

func TestQuotaExceeded(t *testing.T) {
	q := Quota{Instances: 2, VCPUs: 4, MemoryMiB: 1024, DiskGiB: 10}
	for _, c := range []struct {
		use  Use
		want string // prefix of the bound named, "" for none
	}{
		{Use{}, ""},
		{Use{Instances: 2, VCPUs: 4, MemoryMiB: 1024, DiskGiB: 10}, ""},
		{Use{Instances: 3}, "instances"},
		{Use{VCPUs: 5}, "vcpus"},
		{Use{MemoryMiB: 1025}, "memory_mib"},
		{Use{DiskGiB: 11}, "disk_gib"},
	} {
		got := q.Exceeded(c.use)
		if (c.want == "") != (got == "") || !strings.HasPrefix(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.use, got, c.want)
		}
	}
	if got := (Quota{}).Exceeded(Use{Instances: 1e6, VCPUs: 1e6}); got != "" {
		t.Errorf("no quota: %q", got)
	}
	if ProjectOf(&Instance{}) != DefaultProject || ProjectOf(&Instance{Project: "x"}) != "x" {
		t.Error("ProjectOf")
	}
}

func TestUseReshape(t *testing.T) {
	u := Use{Instances: 2, VCPUs: 3, MemoryMiB: 512, DiskGiB: 10}
	got := u.Reshape(Spec{VCPUs: 1, MemoryMiB: 256, DiskGiB: 5}, Spec{VCPUs: 4, MemoryMiB: 1024, DiskGiB: 20})
	if want := (Use{Instances: 2, VCPUs: 6, MemoryMiB: 1280, DiskGiB: 25}); got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
}
