package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/hashicorp/raft"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
)

// RecoverSingleNode rewrites the Raft configuration kept in cfg.DataDir so
// that this server alone is the cluster's one voter, at cfg.BindAddr: the
// way back for a cluster that lost its quorum for good (as Consul's
// peers.json or etcd's --force-new-cluster). Everything in this server's
// log is kept: f (a new, empty FSM) is given the latest snapshot and every
// entry after it, a new snapshot of that is written, and the log then
// starts over from it with the one-server configuration. Entries this
// server had appended but the old cluster never committed are kept too
// (none of them was acknowledged to a client).
//
// The server must not be running. It is an offline step: start the server
// normally afterwards, and add the other servers back as new, empty ones.
func RecoverSingleNode(cfg Config, f *fsm.FSM) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	rc := raftConfig(cfg)
	logs, snaps, err := openStores(cfg.DataDir, rc)
	if err != nil {
		return err
	}
	defer logs.Close()
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	if !has {
		return errors.New("recover: the data dir holds no Raft state: nothing to recover")
	}
	// The transport only encodes this server's address into the new configuration.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.BindAddr))
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(cfg.BindAddr)}}}
	if err := raft.RecoverCluster(rc, f, logs, logs, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	return nil
}
