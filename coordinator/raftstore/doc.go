// Package raftstore owns all of the coordinator's Raft wiring: the log and
// stable store (raft-boltdb, fsynced on every append), the file snapshot store, the TCP
// transport and the raft.Raft itself, behind Open, Apply and Close. Nothing
// else in the coordinator imports hashicorp/raft's configuration.
package raftstore
