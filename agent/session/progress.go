package session

import agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"

// ReportCopyProgress sends how far a running copy step has got on the
// live session, if there is one and its queue has room; it never blocks.
// Progress is best effort: a report lost between sessions is replaced by
// the next one, and the step's result makes the last one moot.
func (c *Client) ReportCopyProgress(p *agentv1.CopyProgress) bool {
	s := c.live.Load()
	if s == nil {
		return false
	}
	select {
	case s.send <- &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_CopyProgress{CopyProgress: p}}:
		return true
	default:
		return false
	}
}
