package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// ImageFetcher pulls an image from another agent (agent/transfer.Transfer).
type ImageFetcher interface {
	FetchImage(ctx context.Context, name, sum, fromHostID, fromAddr string) error
}

// imageTaskTimeout bounds one image task (an adoption converts, a fetch
// copies a few GiB).
const imageTaskTimeout = 30 * time.Minute

// imageTasks runs the coordinator's image tasks, one at a time per image:
// a task for an image whose task still runs is dropped (the coordinator
// sends it again if it still wants it once the report comes).
type imageTasks struct {
	mu      sync.Mutex
	running map[string]bool
}

func (t *imageTasks) start(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == nil {
		t.running = map[string]bool{}
	}
	if t.running[name] {
		return false
	}
	t.running[name] = true
	return true
}

func (t *imageTasks) end(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.running, name)
}

// listImages is the Register's list of images; ok false when the image
// directory could not be listed (then the coordinator is told nothing).
func (c *Client) listImages(ctx context.Context) ([]*agentv1.ImageInfo, bool) {
	list, err := c.cfg.Driver.Images(ctx)
	if err != nil {
		c.log.Warn("image directory not listed; the coordinator is told nothing of images this session", "err", err)
		return nil, false
	}
	out := make([]*agentv1.ImageInfo, 0, len(list))
	for _, im := range list {
		out = append(out, imageInfoPB(im))
	}
	return out, true
}

func imageInfoPB(im hypervisor.ImageInfo) *agentv1.ImageInfo {
	return &agentv1.ImageInfo{Name: im.Name, Format: im.Format, VirtualSize: im.VirtualSize, AllocatedSize: im.AllocatedSize, Sha256: im.SHA256}
}

// reportImage queues a report of image name as the host holds it now
// (after a bundle or a fetch made it), or of its failure.
func (c *Client) reportImage(ctx context.Context, name string, failure error) {
	rep := &agentv1.ImageReport{}
	switch {
	case failure != nil:
		rep.Failures = []*agentv1.ImageTaskFailure{{Name: name, Fault: imageFault(c.cfg.HostID, failure)}}
	default:
		list, err := c.cfg.Driver.Images(ctx)
		if err != nil {
			c.log.Warn("image not reported: the image directory could not be listed", "image", name, "err", err)
			return
		}
		rep.Removed = []string{name}
		for _, im := range list {
			if im.Name == name {
				rep.Images, rep.Removed = []*agentv1.ImageInfo{imageInfoPB(im)}, nil
			}
		}
	}
	c.order.Lock()
	c.out.push(outItem{msg: &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_ImageReport{ImageReport: rep}}})
	c.order.Unlock()
}

func imageFault(host string, err error) *flotillav1.Fault {
	code := executor.FaultAgentError
	switch {
	case errors.Is(err, hypervisor.ErrInvalidSpec):
		code = executor.FaultInvalidDisk
	case errors.Is(err, hypervisor.ErrImageNotFound):
		code = executor.FaultImageNotFound
	case errors.Is(err, hypervisor.ErrAlreadyExists):
		code = "IMAGE_EXISTS"
	case errors.Is(err, executor.ErrPeerUnavailable):
		code = executor.FaultPeerUnavailable
	case errors.Is(err, executor.ErrPeerRefused):
		code = executor.FaultPeerRefused
	case errors.Is(err, executor.ErrDiskCorrupt):
		code = executor.FaultDiskCorrupt
	case errors.Is(err, context.DeadlineExceeded):
		code = executor.FaultDeadlineExceeded
	}
	return &flotillav1.Fault{Code: code, Message: err.Error(), HostId: host}
}

// imageTask runs an image task without blocking the receiver, and reports
// what it did.
func (s *sess) imageTask(t *agentv1.ImageTask) {
	c := s.c
	name := t.GetName()
	log := c.log.With("image", name)
	if err := hypervisor.ValidateImageName(name); err != nil {
		log.Warn("image task refused", "err", err)
		return
	}
	if !c.images.start(name) {
		log.Debug("image task already running")
		return
	}
	c.imageBusy.Add(1)
	go func() {
		defer c.imageBusy.Add(-1)
		defer c.images.end(name)
		ctx, cancel := context.WithTimeout(context.Background(), imageTaskTimeout)
		defer cancel()
		err := c.runImageTask(ctx, log, t)
		if err != nil {
			log.Warn("image task failed", "err", err)
		}
		c.reportImage(ctx, name, err)
	}()
}

func (c *Client) runImageTask(ctx context.Context, log *slog.Logger, t *agentv1.ImageTask) error {
	name := t.GetName()
	switch {
	case t.GetRemove():
		log.Info("removing image")
		return c.cfg.Driver.RemoveImage(ctx, name)
	case t.GetPath() != "":
		log.Info("adopting image", "path", t.GetPath())
		return c.cfg.Driver.AdoptImage(ctx, t.GetPath(), name)
	case t.GetPeerHostId() != "":
		if c.cfg.Images == nil {
			return fmt.Errorf("this agent pulls no images (no peer service): %w", executor.ErrPeerUnavailable)
		}
		log.Info("fetching image", "from", t.GetPeerHostId())
		return c.cfg.Images.FetchImage(ctx, name, t.GetSha256(), t.GetPeerHostId(), t.GetPeerAddress())
	}
	return fmt.Errorf("image task with nothing to do: %w", hypervisor.ErrInvalidSpec)
}

// imageAction reports whether a step makes an image.
func imageAction(a agentv1.StepAction) bool {
	return a == agentv1.StepAction_STEP_ACTION_BUNDLE_DISK || a == agentv1.StepAction_STEP_ACTION_FETCH_IMAGE
}

// resyncImages sends the whole list of images with the inventory: the
// coordinator records it only when it differs from what the catalogue
// says of this host (a catalogue that began after this session did, a
// report lost with a leader).
func (s *sess) resyncImages(ctx context.Context) {
	c := s.c
	if c.imageBusy.Load() > 0 {
		return // the next round
	}
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HypervisorTimeout)
	defer cancel()
	images, ok := c.listImages(hctx)
	if !ok || c.imageBusy.Load() > 0 {
		return
	}
	s.enqueue(ctx, &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_ImageReport{ImageReport: &agentv1.ImageReport{Images: images, Full: true}}})
}

// imageStep reports the image a successful step made: a bundle's new
// image, a fetched one.
func (c *Client) imageStep(step *agentv1.RunStep, res *agentv1.StepResult) {
	if !imageAction(step.GetAction()) {
		return
	}
	if !res.GetSucceeded() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.HypervisorTimeout)
	defer cancel()
	c.reportImage(ctx, step.GetImage(), nil)
}
