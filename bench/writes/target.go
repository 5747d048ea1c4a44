package writes

import (
	"context"
	"fmt"
)

// Target is one system under test: a running cluster plus the client side
// needed to write to it. bench/cmd/flotilla-writes runs every Target with the
// same Config rows and prints them side by side.
//
// ==== HOOK for the Flotilla side ====
// The Flotilla Target (3 coordinator processes on loopback, each op one
// committed CreateInstance-like write) implements this interface and is
// registered in bench/cmd/flotilla-writes/targets.go (newFlotillaTarget).
// Its Name() must be "flotilla" for the flotilla/etcd ratio columns to appear.
type Target interface {
	// Name is the system's name in the table ("etcd", "flotilla").
	Name() string
	// Op performs one committed write. (client, seq) pairs never repeat for
	// the lifetime of a Target (the driver keeps seq increasing across rows),
	// so they can be used as unique IDs.
	Op(ctx context.Context, client, seq int) error
	// Close stops the system's processes and removes their data.
	Close()
}

// InstanceRecord returns a ~300-byte JSON document shaped like a VM instance
// record, used as the value of every benchmark write.
func InstanceRecord(client, seq int) []byte {
	b := fmt.Appendf(make([]byte, 0, 320),
		`{"id":"i-%04d-%08d","name":"bench-%d-%d","host":"host-%02d","state":"PENDING",`+
			`"spec":{"vcpus":2,"memory_mib":2048,"disk_gib":20,"image":"debian-12-generic"},`+
			`"network":{"mac":"52:54:00:%02x:%02x:%02x","ipv4":"10.%d.%d.%d"},`+
			`"labels":{"team":"bench"},"epoch":%d,"created_at":"2026-01-01T00:00:00Z"}`,
		client, seq, client, seq, client%32,
		client&0xff, (seq>>8)&0xff, seq&0xff,
		client&0xff, (seq>>8)&0xff, seq&0xff,
		seq)
	return b
}
