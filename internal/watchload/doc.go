// Package watchload runs real coordinator processes (three on loopback, no
// agent, no libvirt) and attacks one follower with watchers replaying a
// long history from its start: the follower's memory must stay bounded
// and its other calls must stay fast (docs/security.md, "Bounded
// resources").
package watchload
