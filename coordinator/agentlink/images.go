package agentlink

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// SendImageTask queues an image task on the host's live session.
func (s *Server) SendImageTask(hostID string, t *agentv1.ImageTask) error {
	return s.queue(hostID, func(uint64) *agentv1.ConnectResponse {
		return &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_ImageTask{ImageTask: t}}
	})
}

// catalogue reports whether the cluster keeps an image catalogue (its log
// version admits the image commands): until then agents' image reports
// are dropped, and nothing is lost, since every Register says them again.
func (s *Server) catalogue() bool {
	return s.cfg.Store != nil && s.cfg.Store.LogVersion() >= fsm.LogVersion11
}

// registeredImages records the images a newly registered host holds.
func (s *Server) registeredImages(ctx context.Context, reg *agentv1.Register) {
	if !reg.GetImagesListed() || !s.catalogue() {
		return
	}
	held := imagesHeld(reg.GetHostId(), &agentv1.ImageReport{Images: reg.GetImages(), Full: true})
	if _, err := s.apply(ctx, fsm.TypeImagesHeld, held); err != nil {
		s.log.Warn("recording the host's images failed; its next registration says them again", "host", reg.GetHostId(), "err", err)
	}
}

// news reports whether an image report would change the catalogue: a
// full one that says what the catalogue already says of the host (the
// resync's, every ResyncInterval) records nothing.
func (s *Server) news(host string, r *agentv1.ImageReport) bool {
	if !r.GetFull() || len(r.GetRemoved()) > 0 || len(r.GetFailures()) > 0 {
		return true
	}
	images, _ := s.cfg.Store.Images()
	reported := map[string]string{}
	for _, im := range r.GetImages() {
		if hypervisor.ValidateImageName(im.GetName()) == nil {
			reported[im.GetName()] = im.GetSha256()
		}
	}
	for i := range images {
		im := &images[i]
		sum, held := reported[im.Name]
		switch {
		case im.HeldBy(host) != held:
			return true
		case held && (im.SHA256 == "" || len(im.Hosts) == 1 && im.SHA256 != sum):
			return true // the catalogue lacks what only this host can say
		case held && len(im.Imports) > 0:
			return true
		}
		delete(reported, im.Name)
	}
	return len(reported) > 0
}

// maxReportedImages bounds one report's images: an image directory holds
// a few dozen, and one entry must stay small.
const maxReportedImages = 4096

// imagesHeld turns an agent's image report into its command, leaving out
// what no catalogue could hold (a bad name, a huge list).
func imagesHeld(host string, r *agentv1.ImageReport) fsm.ImagesHeld {
	c := fsm.ImagesHeld{HostID: host, Full: r.GetFull()}
	for _, im := range r.GetImages() {
		if hypervisor.ValidateImageName(im.GetName()) != nil || len(c.Images) >= maxReportedImages || len(im.GetSha256()) > 64 || len(im.GetFormat()) > 16 {
			continue
		}
		c.Images = append(c.Images, fsm.ImageFile{Name: im.GetName(), Format: im.GetFormat(), VirtualSize: im.GetVirtualSize(),
			AllocatedSize: im.GetAllocatedSize(), SHA256: im.GetSha256()})
	}
	for _, n := range r.GetRemoved() {
		if hypervisor.ValidateImageName(n) == nil && len(c.Removed) < maxReportedImages {
			c.Removed = append(c.Removed, n)
		}
	}
	for _, f := range r.GetFailures() {
		if hypervisor.ValidateImageName(f.GetName()) != nil || len(c.Failures) >= maxReportedImages {
			continue
		}
		c.Failures = append(c.Failures, fsm.ImageFailure{Name: f.GetName(), Fault: state.Fault{
			Code: truncate(f.GetFault().GetCode(), 64), Message: truncate(f.GetFault().GetMessage(), 1024)}})
	}
	return c
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
