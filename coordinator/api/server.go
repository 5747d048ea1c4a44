package api

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/secrets"
	"github.com/flotilla-vm/flotilla/coordinator/service"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Applier commits an encoded command through the replicated log and
// returns the apply result.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// Config wires the API to the rest of the coordinator.
type Config struct {
	Store   *state.Store
	Applier Applier
	Cluster Cluster
	// Upgrade gates the log version; AddServer admits through it.
	Upgrade Upgrade
	// Policy is how instances are placed (spread or pack, overcommit).
	Policy scheduler.Policy
	// Deadlines override lifecycle.DefaultDeadlines per operation kind.
	Deadlines map[lifecycle.OpKind]time.Duration
	// ReadinessTimeout is a create's readiness deadline when it gives none.
	ReadinessTimeout time.Duration
	// Secrets holds SetPassword's passwords for the orchestrator (nil:
	// SetPassword is refused).
	Secrets *secrets.Store
	// SoftDeleteRetention: see service.Config.
	SoftDeleteRetention time.Duration
	Logger              *slog.Logger
	Now                 func() time.Time // defaults to time.Now
}

// WriteMethods are the methods that change state: on a follower they are
// forwarded to the leader before anything else happens.
var WriteMethods = []string{
	pb.InstanceService_CreateInstance_FullMethodName,
	pb.InstanceService_StartInstance_FullMethodName,
	pb.InstanceService_StopInstance_FullMethodName,
	pb.InstanceService_RestartInstance_FullMethodName,
	pb.InstanceService_PauseInstance_FullMethodName,
	pb.InstanceService_UnpauseInstance_FullMethodName,
	pb.InstanceService_SuspendInstance_FullMethodName,
	pb.InstanceService_ResumeInstance_FullMethodName,
	pb.InstanceService_DeleteInstance_FullMethodName,
	pb.InstanceService_DeallocateInstance_FullMethodName,
	pb.InstanceService_RestoreInstance_FullMethodName,
	pb.InstanceService_UpgradeInstance_FullMethodName,
	pb.OperationService_CancelOperation_FullMethodName,
	pb.ClusterService_AddServer_FullMethodName,
	pb.ClusterService_RemoveServer_FullMethodName,
	pb.HostService_CordonHost_FullMethodName,
	pb.HostService_UncordonHost_FullMethodName,
	pb.HostService_DrainHost_FullMethodName,
	pb.HostService_RemoveHost_FullMethodName,
	pb.InstanceService_UpdateInstance_FullMethodName,
	pb.InstanceService_ResizeInstance_FullMethodName,
	pb.InstanceService_ConfirmResize_FullMethodName,
	pb.InstanceService_RevertResize_FullMethodName,
	pb.InstanceService_ExtendInstance_FullMethodName,
	pb.InstanceService_MoveInstance_FullMethodName,
	pb.InstanceService_MarkOperational_FullMethodName,
	pb.InstanceService_SetPassword_FullMethodName,
	pb.InstanceService_RebuildInstance_FullMethodName,
	pb.InstanceService_RescueInstance_FullMethodName,
	pb.InstanceService_UnrescueInstance_FullMethodName,
	pb.InstanceService_BundleInstance_FullMethodName,
	pb.NetworkService_CreateNetwork_FullMethodName,
	pb.NetworkService_DeleteNetwork_FullMethodName,
	pb.ProjectService_CreateProject_FullMethodName,
	pb.ProjectService_UpdateProject_FullMethodName,
	pb.ProjectService_TopUpProject_FullMethodName,
	pb.ProjectService_FreezeProject_FullMethodName,
	pb.ProjectService_UnfreezeProject_FullMethodName,
}

// core is what the services share: reads go to the store, writes to the
// domain service (cluster membership to the log directly).
type core struct {
	svc   *service.Service
	store *state.Store
	raft  Applier
	log   *slog.Logger
	now   func() time.Time
	// watched holds the wire form of the instance records watchers are
	// sent, shared by all of them.
	watched *sharedPB
}

func newCore(cfg Config) *core {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	svc := service.New(service.Config{Store: cfg.Store, Applier: cfg.Applier, Policy: cfg.Policy, Deadlines: cfg.Deadlines, ReadinessTimeout: cfg.ReadinessTimeout, Now: cfg.Now,
		Secrets: cfg.Secrets, SoftDeleteRetention: cfg.SoftDeleteRetention})
	return &core{svc: svc, store: cfg.Store, raft: cfg.Applier, log: cfg.Logger, now: cfg.Now, watched: newSharedPB()}
}

// Register adds the public services (instances, operations, hosts, cluster, usage, networks) to s.
func Register(s grpc.ServiceRegistrar, cfg Config) {
	c := newCore(cfg)
	pb.RegisterInstanceServiceServer(s, &instances{core: c})
	pb.RegisterOperationServiceServer(s, &operations{core: c})
	pb.RegisterHostServiceServer(s, &hosts{core: c})
	pb.RegisterClusterServiceServer(s, &cluster{core: c, node: cfg.Cluster, upgrade: cfg.Upgrade})
	pb.RegisterUsageServiceServer(s, &usageService{core: c})
	pb.RegisterNetworkServiceServer(s, &networks{core: c})
	pb.RegisterProjectServiceServer(s, &projects{core: c})
}

// apply encodes and commits a command.
func (c *core) apply(ctx context.Context, typ string, body any) (any, error) {
	return fsm.Propose(ctx, c.raft, typ, c.now(), body)
}

// operation returns the committed operation opID as the API shows it.
func (c *core) operation(opID string) (*pb.Operation, error) {
	op, err := c.store.Operation(opID)
	if err != nil {
		return nil, err
	}
	return convert.OperationToPB(&op), nil
}

// waitRevision serves read-your-writes: block until this server has applied rev.
func (c *core) waitRevision(ctx context.Context, rev int64) error {
	if rev <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.store.WaitRevision(ctx, rev)
}
