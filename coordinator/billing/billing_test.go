package billing

import (
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

func TestPrice(t *testing.T) {
	prices := map[string]int64{string(vocabulary.BillingHardwareAndSoftware): 1000, string(vocabulary.BillingHardwareOnly): 100}
	for _, c := range []struct {
		name  string
		spent map[vocabulary.Billing]time.Duration
		vcpus uint32
		want  int64
	}{
		{"nothing", nil, 2, 0},
		{"an hour running, one vCPU", map[vocabulary.Billing]time.Duration{vocabulary.BillingHardwareAndSoftware: time.Hour}, 1, 1000},
		{"half an hour, four vCPUs", map[vocabulary.Billing]time.Duration{vocabulary.BillingHardwareAndSoftware: 30 * time.Minute}, 4, 2000},
		{"two classes", map[vocabulary.Billing]time.Duration{vocabulary.BillingHardwareAndSoftware: time.Hour, vocabulary.BillingHardwareOnly: 2 * time.Hour}, 1, 1200},
		{"a class without a price is free", map[vocabulary.Billing]time.Duration{vocabulary.BillingNotBilled: time.Hour}, 8, 0},
		{"time in no class is free", map[vocabulary.Billing]time.Duration{"": time.Hour}, 8, 0},
		{"a second", map[vocabulary.Billing]time.Duration{vocabulary.BillingHardwareAndSoftware: time.Second}, 36, 10},
	} {
		if got := Price(c.spent, c.vcpus, prices); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
