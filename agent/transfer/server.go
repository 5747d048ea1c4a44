package transfer

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// peerServer is the gRPC shim over Transfer's source side.
type peerServer struct {
	agentv1.UnimplementedAgentPeerServiceServer
	t *Transfer
}

// errNoOffer is all a refused puller learns; the log says which check failed.
var errNoOffer = status.Error(codes.PermissionDenied, "no offer of this disk to this host with this token")

// PullDisk streams an offered disk: the first message carries total_size,
// the last (without data) the SHA-256 of everything sent. The offer stays
// until it expires or is revoked, so a failed import can pull again; a
// Revoke (another step on the instance) ends the pull mid-way.
func (s *peerServer) PullDisk(req *agentv1.PullDiskRequest, stream grpc.ServerStreamingServer[agentv1.DiskChunk]) error {
	t := s.t
	ctx := stream.Context()
	if req.GetImage() != "" {
		return t.serveImage(ctx, req, stream)
	}
	id := req.GetInstanceId()
	log := t.log.With("instance", id, "peer_host", req.GetHostId())
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		log = log.With("peer_addr", p.Addr.String()) // where the puller connects from
	}
	if err := hypervisor.ValidateID(id); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if t.cfg.RequireClientIdentity {
		who, ok := mtls.PeerIdentity(ctx)
		if !ok || !who.Has(mtls.RoleAgent) || who.Name != req.GetHostId() {
			log.Warn("pull refused: client certificate does not name the pulling host",
				"mtls", ok, "cert_name", who.Name, "cert_roles", who.Roles)
			return errNoOffer
		}
	}
	layer, err := executor.LayerFromPB(req.GetLayer())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	log = log.With("layer", layerName(layer))
	o := t.match(id, layer, req.GetToken(), req.GetHostId())
	if o == nil {
		log.Warn("pull refused: no unexpired offer for this host and token")
		return errNoOffer
	}

	ctx, p := t.startPull(ctx, id)
	defer t.endPull(id, p)
	disk, size, err := t.cfg.Driver.OpenDisk(ctx, id, layer)
	if err != nil {
		log.Warn("pull: cannot open disk", "err", err)
		return driverStatus(ctx, err)
	}
	defer disk.Close()
	if req.GetVersion() >= streamVersion {
		return t.serveExtents(ctx, log, req, id, layer, disk, size, stream)
	}

	// The plain stream, for a puller of an older version.
	started := time.Now()
	h := sha256.New()
	var sent int64
	for first := true; ; first = false {
		// A fresh buffer per message: gRPC may still hold the last one.
		buf := make([]byte, ChunkSize)
		n, rerr := io.ReadFull(disk, buf)
		if n > 0 || first {
			msg := &agentv1.DiskChunk{Data: buf[:n]}
			if first {
				msg.TotalSize = uint64(size)
			}
			if err := t.sendLimit.wait(ctx, n); err != nil {
				return status.FromContextError(err).Err()
			}
			if err := stream.Send(msg); err != nil {
				log.Info("pull broken while sending", "sent_bytes", sent, "err", err)
				return err
			}
			h.Write(buf[:n])
			sent += int64(n)
			t.wireSent.Add(int64(n))
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			log.Error("pull: reading disk failed", "sent_bytes", sent, "err", rerr)
			return status.Errorf(codes.Internal, "reading disk: %v", rerr)
		}
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
	}
	if sent != size {
		// The file changed under us: the domain was not really stopped.
		log.Error("pull: disk changed size while being sent", "announced_bytes", size, "sent_bytes", sent)
		return status.Errorf(codes.Aborted, "disk changed size while being sent (%d bytes announced, %d read)", size, sent)
	}
	if err := t.checkStillOff(ctx, log, id, layer); err != nil {
		return err
	}
	if err := stream.Send(&agentv1.DiskChunk{Sha256: h.Sum(nil)}); err != nil {
		return err
	}
	log.Info("disk pulled", "disk_bytes", sent, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// serveImage streams an image of the catalogue in its travelling form.
// Images are the fleet's, not an instance's: any agent may pull one, no
// offer needed (with mutual TLS, only an agent's certificate will do).
func (t *Transfer) serveImage(ctx context.Context, req *agentv1.PullDiskRequest, stream grpc.ServerStreamingServer[agentv1.DiskChunk]) error {
	name := req.GetImage()
	log := t.log.With("image", name, "peer_host", req.GetHostId())
	if err := hypervisor.ValidateImageName(name); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if t.cfg.RequireClientIdentity {
		who, ok := mtls.PeerIdentity(ctx)
		if !ok || !who.Has(mtls.RoleAgent) || who.Name != req.GetHostId() {
			log.Warn("image pull refused: client certificate does not name the pulling host", "mtls", ok, "cert_name", who.Name)
			return status.Error(codes.PermissionDenied, "only an agent pulls images")
		}
	}
	if req.GetVersion() < streamVersion {
		return status.Error(codes.FailedPrecondition, "images travel in the extent stream (version 2) only")
	}
	img, size, err := t.cfg.Driver.OpenImage(ctx, name)
	if err != nil {
		log.Warn("image pull: cannot open image", "err", err)
		if errors.Is(err, hypervisor.ErrImageNotFound) {
			return status.Error(codes.NotFound, err.Error())
		}
		return driverStatus(ctx, err)
	}
	defer img.Close()
	return t.serveExtents(ctx, log, req, "", hypervisor.DiskWhole, img, size, stream)
}

// checkStillOff: the domain must still be off once every byte is read: a
// disk written to while it was read is torn even if its size held. (A
// frozen base or mid is not written to, whatever the domain does.)
func (t *Transfer) checkStillOff(ctx context.Context, log *slog.Logger, id string, layer hypervisor.DiskLayer) error {
	if id == "" {
		return nil // an image: no domain writes to it
	}
	if st, err := t.cfg.Driver.Status(ctx, id); layer != hypervisor.DiskBase && layer != hypervisor.DiskMid && (err != nil || st.State != hypervisor.PowerShutOff) {
		log.Error("pull: domain no longer shut off after the read", "state", st.State, "err", err)
		return status.Error(codes.Aborted, "the domain did not stay shut off while its disk was read")
	}
	return nil
}

// driverStatus maps a driver error to the code the puller classifies.
func driverStatus(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, hypervisor.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, hypervisor.ErrInvalidState):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, hypervisor.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
