package orchestrator

import (
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// ImageTasks sends image tasks to agents (the agent link).
type ImageTasks interface {
	SendImageTask(hostID string, t *agentv1.ImageTask) error
}

// imageResend is when an image task still wanted is sent again on the
// same session: the agent drops a task for an image whose task runs, and
// reports every task's end, so a resend only matters when a report or a
// task was lost.
const imageResend = time.Minute

// imageSent is when, and on which session, a task was last sent.
type imageSent struct {
	epoch uint64
	at    time.Time
}

// imageTasks sends the tasks the catalogue wants done: a copy asked for on
// a host (from a file there, or from another host), or, for an image being
// deleted, its removal from each host that holds it. Tasks are idempotent
// (an agent that holds the image reports it held), so a new leader simply
// sends what the catalogue still wants.
func (o *Orchestrator) imageTasks(now time.Time) {
	if o.cfg.Images == nil {
		return
	}
	images, _ := o.cfg.Store.Images()
	live := map[string]bool{}
	send := func(host string, t *agentv1.ImageTask) {
		key := t.Name + "\x00" + host
		live[key] = true
		epoch, ok := o.cfg.Sessions.Epoch(host)
		if !ok {
			return
		}
		if prev, sent := o.imagesSent[key]; sent && prev.epoch == epoch && now.Sub(prev.at) < imageResend {
			return
		}
		if err := o.cfg.Images.SendImageTask(host, t); err != nil {
			o.log.Warn("sending an image task failed; will retry", "image", t.Name, "host", host, "err", err)
			return
		}
		o.imagesSent[key] = imageSent{epoch: epoch, at: now}
		o.log.Info("image task sent", "image", t.Name, "host", host, "remove", t.Remove, "path", t.Path, "from", t.PeerHostId)
	}
	for k := range images {
		im := &images[k]
		if im.Deleting {
			for _, h := range im.Hosts {
				send(h, &agentv1.ImageTask{Name: im.Name, Remove: true})
			}
			continue
		}
		for _, x := range im.Imports {
			t := &agentv1.ImageTask{Name: im.Name, Path: x.Path, Sha256: im.SHA256}
			if x.FromHost != "" {
				src, err := o.cfg.Store.Host(x.FromHost)
				if err != nil || src.Status != state.HostReady {
					continue // the source is away: its copy waits for it
				}
				t.PeerHostId, t.PeerAddress = x.FromHost, src.PeerAddr
			}
			send(x.HostID, t)
		}
	}
	for k := range o.imagesSent {
		if !live[k] {
			delete(o.imagesSent, k)
		}
	}
}
