package fsm

import "github.com/flotilla-vm/flotilla/coordinator/state"

func applyRegisterServer(tx *state.Tx, c *RegisterServer) (any, error) {
	if cur, ok := tx.Server(c.Server.ID); ok && cur == c.Server {
		return nil, nil // unchanged: no new revision
	}
	tx.PutServer(c.Server)
	return nil, nil
}

func applyRemoveServer(tx *state.Tx, c *RemoveServer) (any, error) {
	if _, ok := tx.Server(c.ID); ok {
		tx.DeleteServer(c.ID)
	}
	return nil, nil
}
