package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// parseStatuses parses a comma-separated list of statuses, e.g.
// "running,STATUS_STOPPED". Names are case-insensitive, with or without the
// STATUS_ prefix; empty items are ignored.
func parseStatuses(s string) ([]flotillav1.Status, error) {
	var out []flotillav1.Status
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key := strings.ToUpper(item)
		if !strings.HasPrefix(key, "STATUS_") {
			key = "STATUS_" + key
		}
		v, ok := flotillav1.Status_value[key]
		if !ok || v == int32(flotillav1.Status_STATUS_UNSPECIFIED) {
			return nil, fmt.Errorf("unknown status %q", item)
		}
		out = append(out, flotillav1.Status(v))
	}
	return out, nil
}

// statusFilter is a repeatable --status flag: --status running,stopped --status paused.
type statusFilter []flotillav1.Status

func (f *statusFilter) String() string { return "" }

func (f *statusFilter) Type() string { return "statuses" }

func (f *statusFilter) Set(s string) error {
	v, err := parseStatuses(s)
	if err != nil {
		return err
	}
	*f = append(*f, v...)
	return nil
}

// labelFlag is a repeatable --label key=value flag.
type labelFlag map[string]string

func (f labelFlag) String() string { return "" }

func (f labelFlag) Type() string { return "key=value" }

func (f labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not key=value", s)
	}
	f[k] = v
	return nil
}

// nicFlag is a repeatable --network NETWORK[=IPV4] flag.
type nicFlag []*flotillav1.NetworkInterfaceRequest

func (f *nicFlag) String() string { return "" }

func (f *nicFlag) Type() string { return "network[=ipv4]" }

func (f *nicFlag) Set(s string) error {
	network, ip, _ := strings.Cut(s, "=")
	if network == "" {
		return fmt.Errorf("network %q: want NETWORK or NETWORK=IPV4", s)
	}
	*f = append(*f, &flotillav1.NetworkInterfaceRequest{Network: network, Ipv4Address: ip})
	return nil
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (f *stringsFlag) String() string { return "" }

func (f *stringsFlag) Type() string { return "string" }

func (f *stringsFlag) Set(s string) error { *f = append(*f, s); return nil }

// vocabularyFlag is a repeatable --vocabulary flag: --vocabulary nova,azure --vocabulary rightscale.
type vocabularyFlag []flotillav1.Vocabulary

func (f *vocabularyFlag) String() string { return "" }

func (f *vocabularyFlag) Type() string { return "vocabularies" }

func (f *vocabularyFlag) Set(s string) error {
	for _, item := range strings.Split(s, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		if item == "" {
			continue
		}
		v, ok := parseFlagWord[flotillav1.Vocabulary](item)
		if !ok {
			return fmt.Errorf("unknown vocabulary %q (nova, azure, rightscale, manage-instance, managed-instance)", item)
		}
		*f = append(*f, v)
	}
	return nil
}

const vocabularyHelp = "also show states in these seeds' words, as extra columns: nova, azure, rightscale, manage-instance, managed-instance"

func parseGet(name string, args []string) (*flotillav1.GetInstanceRequest, error) {
	return parseWith(name, args, 1, defineGet)
}

func defineGet(fs *pflag.FlagSet, _ string) func([]string) (*flotillav1.GetInstanceRequest, error) {
	var vocabs vocabularyFlag
	fs.Var(&vocabs, "vocabulary", vocabularyHelp)
	return func(pos []string) (*flotillav1.GetInstanceRequest, error) {
		return &flotillav1.GetInstanceRequest{Id: pos[0], Vocabularies: vocabs}, nil
	}
}

func runGet(ctx context.Context, c *cli, req *flotillav1.GetInstanceRequest) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	in, err := c.instances.GetInstance(cctx, req)
	if err != nil {
		return err
	}
	return printInstances(c.stdout, c.out, []*flotillav1.Instance{in}, req.Vocabularies...)
}

// parseList builds the first ListInstances request.
func parseList(name string, args []string) (*flotillav1.ListInstancesRequest, error) {
	return parseWith(name, args, 0, defineList)
}

func defineList(fs *pflag.FlagSet, _ string) func([]string) (*flotillav1.ListInstancesRequest, error) {
	var filter statusFilter
	fs.Var(&filter, "status", "only these statuses, comma-separated (e.g. RUNNING,STOPPED)")
	all := fs.Bool("all", false, "include deleted instances")
	project := fs.String("project", "", "only this project's instances")
	var vocabs vocabularyFlag
	fs.Var(&vocabs, "vocabulary", vocabularyHelp)
	return func([]string) (*flotillav1.ListInstancesRequest, error) {
		return &flotillav1.ListInstancesRequest{StatusFilter: filter, ShowDeleted: *all, Vocabularies: vocabs, Project: *project}, nil
	}
}

func runList(ctx context.Context, c *cli, req *flotillav1.ListInstancesRequest) error {
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	var all []*flotillav1.Instance
	seen := map[string]bool{}
	for {
		cctx, cancel := c.call(ctx)
		resp, err := c.instances.ListInstances(cctx, req)
		cancel()
		if err != nil {
			return err
		}
		all = append(all, resp.GetInstances()...)
		next := resp.GetNextPageToken()
		if next == "" {
			break
		}
		if seen[next] {
			return &exitError{msg: fmt.Sprintf("server repeated page token %q", next)}
		}
		seen[next] = true
		req = proto.CloneOf(req)
		req.PageToken = next
		// Read later pages at least as new as the first (read-your-writes
		// if a later page is served by another replica).
		if req.MinRevision == 0 {
			req.MinRevision = resp.GetRevision()
		}
	}
	return printInstances(c.stdout, c.out.asList(), all, req.Vocabularies...)
}

func parseWatch(name string, args []string) (*flotillav1.WatchInstancesRequest, error) {
	return parseWith(name, args, 0, defineWatch)
}

func defineWatch(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.WatchInstancesRequest, error) {
	from := fs.Int64("from-revision", 0, "stream changes after this revision (0: from now on)")
	id := fs.String("id", "", "only changes to this instance")
	var vocabs vocabularyFlag
	fs.Var(&vocabs, "vocabulary", vocabularyHelp)
	return func([]string) (*flotillav1.WatchInstancesRequest, error) {
		if *from < 0 {
			return nil, &usageError{name, "--from-revision must not be negative"}
		}
		return &flotillav1.WatchInstancesRequest{StartRevision: *from, InstanceId: *id, Vocabularies: vocabs}, nil
	}
}

// runWatch prints every change until the stream ends or the user interrupts.
// The stream itself has no timeout.
func runWatch(ctx context.Context, c *cli, req *flotillav1.WatchInstancesRequest) error {
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	stream, err := c.instances.WatchInstances(ctx, req)
	if err != nil {
		return watchError(ctx, err, req.GetStartRevision())
	}
	if err := printWatchHeader(c.stdout, c.out, req.Vocabularies...); err != nil {
		return err
	}
	last := req.GetStartRevision()
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return watchError(ctx, err, last)
		}
		last = ev.GetRevision()
		if err := printWatchEvent(c.stdout, c.out, ev, req.Vocabularies...); err != nil {
			return err
		}
	}
}

func watchError(ctx context.Context, err error, last int64) error {
	// Interrupted by the caller (Ctrl-C, or its own deadline): a normal end
	// of a watch. gRPC's deadline timer may fire a moment before ctx says so.
	if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
		return nil
	}
	if last == 0 {
		return err
	}
	st := status.Convert(err)
	return &exitError{msg: fmt.Sprintf("%s: %s (resume with --from-revision %d)", st.Code(), st.Message(), last), code: codeOf(st.Code())}
}

// mutation is a parsed mutating command.
type mutation struct {
	req  proto.Message // one of the *InstanceRequest messages
	wait waitFlags
}

// parseMutation parses create and the lifecycle actions into a request.
func parseMutation(name string, args []string) (*mutation, error) {
	npos := 1
	if name == "create" {
		npos = 0
	}
	return parseWith(name, args, npos, defineMutation(name))
}

// defineMutation is the definer of create or a lifecycle action (kind is
// the command's name: "create", "stop", ...).
func defineMutation(kind string) definer[*mutation] {
	return func(fs *pflag.FlagSet, name string) func([]string) (*mutation, error) {
		if name == "" {
			name = kind
		}
		return mutationFlags(fs, kind, name)
	}
}

func mutationFlags(fs *pflag.FlagSet, kind, name string) func([]string) (*mutation, error) {
	requestID := fs.String("request-id", "", "idempotency key: a retry with the same key returns the first operation")
	var wait waitFlags
	wait.define(fs)
	var (
		instName, image  *string
		vcpus, memoryMiB *int64
		diskGiB          *int64
		graceful         *time.Duration
		force, hard      *bool
		labels           = labelFlag{}
		nics             nicFlag
		sshKeys          stringsFlag
		userDataFile     *string
		readyTimeout     *time.Duration
		decommission     *time.Duration
		clearLabels      *bool
		recovery         *string
		maxRestarts      *int
		target           *string
		confirmAfter     *time.Duration
		health           *time.Duration
		placement        placementFlags
		project          *string
	)
	switch kind {
	case "create":
		instName = fs.String("name", "", "instance name (required)")
		image = fs.String("image", "", "image name (required)")
		vcpus = fs.Int64("vcpus", 1, "virtual CPUs")
		memoryMiB = fs.Int64("memory-mib", 256, "memory in MiB")
		diskGiB = fs.Int64("disk-gib", 0, "disk size in GiB (0: the image's size)")
		fs.Var(labels, "label", "a label of the instance, key=value (repeatable)")
		fs.Var(&nics, "network", "a NIC on this network, NETWORK or NETWORK=IPV4 for a static address (repeatable, in order)")
		fs.Var(&sshKeys, "ssh-key", "an SSH public key for the guest (repeatable)")
		userDataFile = fs.String("user-data-file", "", "a file of cloud-init user data for the guest")
		readyTimeout = fs.Duration("readiness-timeout", 0, "how long the guest may boot before it is stranded (0: never; not given: the cluster's default)")
		recovery = fs.String("recovery", "", "what to do after an unexpected power-off: leave, restart or mark-failed (default: leave)")
		maxRestarts = fs.Int("max-restarts", 0, "for --recovery restart: how many automatic restarts at most (0: 3)")
		decommission = fs.Duration("decommission-timeout", 0, "how long a stop or delete that gives none lets the guest run its decommission work (0: none)")
		project = fs.String("project", "", "the project it belongs to (default: default)")
		placement.define(fs)
	case "update":
		instName = fs.String("name", "", "the new name")
		fs.Var(labels, "label", "a label, key=value (repeatable): the given labels replace all of the old ones")
		clearLabels = fs.Bool("clear-labels", false, "remove every label")
		recovery = fs.String("recovery", "", "what to do after an unexpected power-off: leave, restart or mark-failed")
		maxRestarts = fs.Int("max-restarts", 0, "for --recovery restart: how many automatic restarts at most (0: 3)")
	case "stop":
		graceful = fs.Duration("graceful", 10*time.Minute, "how long the guest gets to power off")
		force = fs.Bool("force", false, "destroy the domain if the guest has not powered off in time")
		decommission = fs.Duration("decommission-timeout", 0, "how long the guest may run its decommission work first (0: none; not given: the instance's)")
	case "delete":
		decommission = fs.Duration("decommission-timeout", 0, "how long the guest may run its decommission work first (0: none; not given: the instance's)")
		force = fs.Bool("force", false, "reclaim at once, even with a retention window (a SOFT_DELETED instance is reclaimed by any delete)")
	case "restart":
		hard = fs.Bool("hard", false, "reset the machine instead of asking the guest")
	case "upgrade":
		image = fs.String("image", "", "the new image (version); empty: keep")
		vcpus = fs.Int64("vcpus", 0, "the new vCPU count (0: keep)")
		memoryMiB = fs.Int64("memory-mib", 0, "the new memory in MiB (0: keep)")
		health = fs.Duration("health-timeout", 0, "how long the upgraded guest has to become healthy before the upgrade rolls back (0: 3 minutes)")
		graceful = fs.Duration("graceful", 10*time.Minute, "how long the guest gets to power off")
	case "resize":
		vcpus = fs.Int64("vcpus", 0, "the new vCPU count (0: keep)")
		memoryMiB = fs.Int64("memory-mib", 0, "the new memory in MiB (0: keep)")
		diskGiB = fs.Int64("disk-gib", 0, "the new disk size in GiB, never smaller (0: keep)")
		target = fs.String("to", "", "the host to go to (its own: in place; empty: in place if it fits, else where the scheduler finds room)")
		confirmAfter = fs.Duration("confirm-after", 0, "confirm by itself this long after it succeeded (0: wait for confirm-resize or revert-resize)")
		graceful = fs.Duration("graceful", 10*time.Minute, "how long the guest gets to power off")
	case "extend":
		diskGiB = fs.Int64("disk-gib", 0, "the new disk size in GiB (required, larger than now)")
	case "revert-resize":
		graceful = fs.Duration("graceful", 10*time.Minute, "how long the resized guest gets to power off")
	case "move":
		target = fs.String("to", "", "the host to go to (empty: the scheduler picks)")
		graceful = fs.Duration("graceful", 10*time.Minute, "how long the guest gets to power off")
	case "rebuild":
		image = fs.String("image", "", "the image of the fresh disk (default: the instance's own)")
	case "rescue":
		image = fs.String("image", "", "the rescue image (default: the instance's own, booted in rescue mode)")
	case "bundle":
		image = fs.String("image", "", "the new image's name (required)")
	}
	usage := name
	return func(pos []string) (*mutation, error) {
		m := &mutation{wait: wait}
		var id string
		if len(pos) == 1 {
			id = pos[0]
		}
		set := map[string]bool{}
		fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
		switch kind {
		case "create":
			switch {
			case *instName == "":
				return nil, &usageError{usage, "--name is required"}
			case *image == "":
				return nil, &usageError{usage, "--image is required"}
			case *vcpus < math.MinInt32 || *vcpus > math.MaxInt32:
				// Only what cannot be represented is refused here; the
				// server validates the ranges (INVALID_ARGUMENT).
				return nil, &usageError{usage, "--vcpus is out of range"}
			}
			m.req = &flotillav1.CreateInstanceRequest{
				Name:      *instName,
				RequestId: *requestID,
				Spec: &flotillav1.InstanceSpec{
					Vcpus: int32(*vcpus), MemoryMib: *memoryMiB, DiskGib: *diskGiB, Image: *image,
				},
				Labels:            labels,
				Interfaces:        nics,
				SshAuthorizedKeys: sshKeys,
				Project:           *project,
			}
			if set["readiness-timeout"] {
				m.req.(*flotillav1.CreateInstanceRequest).ReadinessTimeout = durationpb.New(*readyTimeout)
			}
			if *decommission > 0 {
				m.req.(*flotillav1.CreateInstanceRequest).DecommissionTimeout = durationpb.New(*decommission)
			}
			if *userDataFile != "" {
				b, err := os.ReadFile(*userDataFile)
				if err != nil {
					return nil, &usageError{usage, fmt.Sprintf("--user-data-file: %v", err)}
				}
				m.req.(*flotillav1.CreateInstanceRequest).UserData = string(b)
			}
			if set["recovery"] || set["max-restarts"] {
				r, err := recoveryOf(usage, *recovery, *maxRestarts)
				if err != nil {
					return nil, err
				}
				m.req.(*flotillav1.CreateInstanceRequest).Recovery = r
			}
			m.req.(*flotillav1.CreateInstanceRequest).Placement = placement.build()
		case "update":
			req := &flotillav1.UpdateInstanceRequest{Id: id, RequestId: *requestID, UpdateMask: &fieldmaskpb.FieldMask{}}
			if set["name"] {
				req.Name = *instName
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "name")
			}
			if set["label"] || *clearLabels {
				if set["label"] && *clearLabels {
					return nil, &usageError{usage, "--label and --clear-labels exclude each other"}
				}
				req.Labels = labels
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "labels")
			}
			if set["recovery"] || set["max-restarts"] {
				r, err := recoveryOf(usage, *recovery, *maxRestarts)
				if err != nil {
					return nil, err
				}
				req.Recovery = r
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "recovery")
			}
			if len(req.UpdateMask.Paths) == 0 {
				return nil, &usageError{usage, "nothing to update: give --name, --label, --clear-labels or --recovery"}
			}
			m.req = req
		case "start":
			m.req = &flotillav1.StartInstanceRequest{Id: id, RequestId: *requestID}
		case "stop":
			if *graceful <= 0 {
				return nil, &usageError{usage, "--graceful must be positive"}
			}
			req := &flotillav1.StopInstanceRequest{Id: id, RequestId: *requestID,
				GracefulTimeout: durationpb.New(*graceful), Force: *force}
			if set["decommission-timeout"] {
				req.DecommissionTimeout = durationpb.New(*decommission)
			}
			m.req = req
		case "upgrade":
			switch {
			case *vcpus < 0 || *vcpus > math.MaxInt32:
				return nil, &usageError{usage, "--vcpus is out of range"}
			case *image == "" && *vcpus == 0 && *memoryMiB == 0:
				return nil, &usageError{usage, "give at least one of --image, --vcpus, --memory-mib"}
			case *graceful <= 0 || *health < 0:
				return nil, &usageError{usage, "--graceful must be positive and --health-timeout not negative"}
			}
			req := &flotillav1.UpgradeInstanceRequest{Id: id, RequestId: *requestID, Image: *image, Vcpus: int32(*vcpus),
				MemoryMib: *memoryMiB, GracefulTimeout: durationpb.New(*graceful)}
			if *health > 0 {
				req.HealthTimeout = durationpb.New(*health)
			}
			m.req = req
		case "deallocate":
			m.req = &flotillav1.DeallocateInstanceRequest{Id: id, RequestId: *requestID}
		case "restore":
			m.req = &flotillav1.RestoreInstanceRequest{Id: id, RequestId: *requestID}
		case "restart":
			m.req = &flotillav1.RestartInstanceRequest{Id: id, RequestId: *requestID, Hard: *hard}
		case "pause":
			m.req = &flotillav1.PauseInstanceRequest{Id: id, RequestId: *requestID}
		case "unpause":
			m.req = &flotillav1.UnpauseInstanceRequest{Id: id, RequestId: *requestID}
		case "suspend":
			m.req = &flotillav1.SuspendInstanceRequest{Id: id, RequestId: *requestID}
		case "resume":
			m.req = &flotillav1.ResumeInstanceRequest{Id: id, RequestId: *requestID}
		case "delete":
			req := &flotillav1.DeleteInstanceRequest{Id: id, RequestId: *requestID, Force: *force}
			if set["decommission-timeout"] {
				req.DecommissionTimeout = durationpb.New(*decommission)
			}
			m.req = req
		case "resize":
			switch {
			case *vcpus < 0 || *vcpus > math.MaxInt32:
				return nil, &usageError{usage, "--vcpus is out of range"}
			case *vcpus == 0 && *memoryMiB == 0 && *diskGiB == 0:
				return nil, &usageError{usage, "give at least one of --vcpus, --memory-mib, --disk-gib"}
			case *graceful <= 0 || *confirmAfter < 0:
				return nil, &usageError{usage, "--graceful must be positive and --confirm-after not negative"}
			}
			req := &flotillav1.ResizeInstanceRequest{Id: id, RequestId: *requestID, Vcpus: int32(*vcpus), MemoryMib: *memoryMiB,
				DiskGib: *diskGiB, TargetHostId: *target, GracefulTimeout: durationpb.New(*graceful)}
			if *confirmAfter > 0 {
				req.ConfirmWindow = durationpb.New(*confirmAfter)
			}
			m.req = req
		case "confirm-resize":
			m.req = &flotillav1.ConfirmResizeRequest{Id: id, RequestId: *requestID}
		case "revert-resize":
			if *graceful <= 0 {
				return nil, &usageError{usage, "--graceful must be positive"}
			}
			m.req = &flotillav1.RevertResizeRequest{Id: id, RequestId: *requestID, GracefulTimeout: durationpb.New(*graceful)}
		case "extend":
			if *diskGiB <= 0 {
				return nil, &usageError{usage, "--disk-gib is required"}
			}
			m.req = &flotillav1.ExtendInstanceRequest{Id: id, RequestId: *requestID, DiskGib: *diskGiB}
		case "move":
			if *graceful <= 0 {
				return nil, &usageError{usage, "--graceful must be positive"}
			}
			m.req = &flotillav1.MoveInstanceRequest{Id: id, RequestId: *requestID, TargetHostId: *target, GracefulTimeout: durationpb.New(*graceful)}
		case "rebuild":
			m.req = &flotillav1.RebuildInstanceRequest{Id: id, RequestId: *requestID, Image: *image}
		case "rescue":
			m.req = &flotillav1.RescueInstanceRequest{Id: id, RequestId: *requestID, RescueImage: *image}
		case "unrescue":
			m.req = &flotillav1.UnrescueInstanceRequest{Id: id, RequestId: *requestID}
		case "bundle":
			if *image == "" {
				return nil, &usageError{usage, "--image is required"}
			}
			m.req = &flotillav1.BundleInstanceRequest{Id: id, RequestId: *requestID, Image: *image}
		default:
			return nil, fmt.Errorf("internal: %q is not a mutation", kind)
		}
		return m, nil
	}
}

// recoveryOf reads --recovery and --max-restarts.
func recoveryOf(usage, policy string, maxRestarts int) (*flotillav1.Recovery, error) {
	p, ok := parseFlagWord[flotillav1.RecoveryPolicy](policy)
	if !ok {
		return nil, &usageError{usage, "--recovery must be leave, restart or mark-failed"}
	}
	if maxRestarts < 0 || maxRestarts > math.MaxInt32 {
		return nil, &usageError{usage, "--max-restarts is out of range"}
	}
	return &flotillav1.Recovery{Policy: p, MaxRestarts: int32(maxRestarts)}, nil
}

// placementFlags are create's placement constraints.
type placementFlags struct {
	hypervisor, antiAffinity string
	preemptible              bool
	hostLabels               labelFlag
}

func (p *placementFlags) define(fs *pflag.FlagSet) {
	p.hostLabels = labelFlag{}
	fs.StringVar(&p.hypervisor, "hypervisor", "", "the hypervisor kind the host must have: kvm, qemu, xen, fake (default: any)")
	fs.StringVar(&p.antiAffinity, "anti-affinity", "", "an anti-affinity group: no two instances of a group run on one host")
	fs.BoolVar(&p.preemptible, "preemptible", false, "the instance may be evicted to make room for others")
	fs.Var(p.hostLabels, "host-label", "a label the host must carry, key=value (repeatable)")
}

// build is the Placement asked for, nil if none.
func (p *placementFlags) build() *flotillav1.Placement {
	if p.hypervisor == "" && p.antiAffinity == "" && !p.preemptible && len(p.hostLabels) == 0 {
		return nil
	}
	pl := &flotillav1.Placement{HypervisorKind: p.hypervisor, AntiAffinityGroup: p.antiAffinity, Preemptible: p.preemptible}
	if len(p.hostLabels) > 0 {
		pl.HostLabels = p.hostLabels
	}
	return pl
}

// send issues the RPC that matches the request's type.
func send(ctx context.Context, cl flotillav1.InstanceServiceClient, req proto.Message) (*flotillav1.Operation, error) {
	switch r := req.(type) {
	case *flotillav1.CreateInstanceRequest:
		return cl.CreateInstance(ctx, r)
	case *flotillav1.StartInstanceRequest:
		return cl.StartInstance(ctx, r)
	case *flotillav1.UpdateInstanceRequest:
		return cl.UpdateInstance(ctx, r)
	case *flotillav1.StopInstanceRequest:
		return cl.StopInstance(ctx, r)
	case *flotillav1.RestartInstanceRequest:
		return cl.RestartInstance(ctx, r)
	case *flotillav1.PauseInstanceRequest:
		return cl.PauseInstance(ctx, r)
	case *flotillav1.UnpauseInstanceRequest:
		return cl.UnpauseInstance(ctx, r)
	case *flotillav1.SuspendInstanceRequest:
		return cl.SuspendInstance(ctx, r)
	case *flotillav1.ResumeInstanceRequest:
		return cl.ResumeInstance(ctx, r)
	case *flotillav1.DeleteInstanceRequest:
		return cl.DeleteInstance(ctx, r)
	case *flotillav1.DeallocateInstanceRequest:
		return cl.DeallocateInstance(ctx, r)
	case *flotillav1.RestoreInstanceRequest:
		return cl.RestoreInstance(ctx, r)
	case *flotillav1.UpgradeInstanceRequest:
		return cl.UpgradeInstance(ctx, r)
	case *flotillav1.ResizeInstanceRequest:
		return cl.ResizeInstance(ctx, r)
	case *flotillav1.ConfirmResizeRequest:
		return cl.ConfirmResize(ctx, r)
	case *flotillav1.RevertResizeRequest:
		return cl.RevertResize(ctx, r)
	case *flotillav1.ExtendInstanceRequest:
		return cl.ExtendInstance(ctx, r)
	case *flotillav1.MoveInstanceRequest:
		return cl.MoveInstance(ctx, r)
	case *flotillav1.SetPasswordRequest:
		return cl.SetPassword(ctx, r)
	case *flotillav1.RebuildInstanceRequest:
		return cl.RebuildInstance(ctx, r)
	case *flotillav1.RescueInstanceRequest:
		return cl.RescueInstance(ctx, r)
	case *flotillav1.UnrescueInstanceRequest:
		return cl.UnrescueInstance(ctx, r)
	case *flotillav1.BundleInstanceRequest:
		return cl.BundleInstance(ctx, r)
	}
	return nil, fmt.Errorf("internal: unexpected request %T", req)
}

func runMutation(ctx context.Context, c *cli, m *mutation) error {
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	cctx, cancel := c.call(ctx)
	op, err := send(cctx, c.instances, m.req)
	cancel()
	if err != nil {
		return err
	}
	return c.afterChange(ctx, op, m.wait)
}

// runMarkOperational declares a stranded instance's guest ready for work.
func runMarkOperational(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	in, err := c.instances.MarkOperational(cctx, &flotillav1.MarkOperationalRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	return printInstances(c.stdout, c.out, []*flotillav1.Instance{in})
}

// runSetPassword sets a user's password inside the guest. The password is
// read from a file (or "-": standard input), never from the command line,
// where other users of the machine and the shell's history would see it.
func runSetPassword(ctx context.Context, c *cli, m *mutation) error {
	req := m.req.(*flotillav1.SetPasswordRequest)
	pw, err := readPassword(req.Password) // the file's name, until read
	if err != nil {
		return err
	}
	req.Password = pw
	return runMutation(ctx, c, m)
}

// defineSetPassword: the request carries the password file's name in
// Password until runSetPassword reads it.
func defineSetPassword(fs *pflag.FlagSet, name string) func([]string) (*mutation, error) {
	user := fs.String("user", "", "the user (default: root)")
	file := fs.String("password-file", "", "a file whose first line is the password; - reads standard input")
	requestID := fs.String("request-id", "", "idempotency key: a retry with the same key returns the first operation")
	var wait waitFlags
	wait.define(fs)
	return func(pos []string) (*mutation, error) {
		if *file == "" {
			return nil, &usageError{name, "--password-file is required (- reads standard input)"}
		}
		return &mutation{req: &flotillav1.SetPasswordRequest{Id: pos[0], User: *user, Password: *file, RequestId: *requestID}, wait: wait}, nil
	}
}

// readPassword reads the first line of path ("-": standard input), without
// its line ending.
func readPassword(path string) (string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", &exitError{msg: fmt.Sprintf("reading the password: %v", err)}
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", &exitError{msg: fmt.Sprintf("reading the password: %v", err)}
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// instanceCommands are the instance commands, at the top level as today.
func instanceCommands(c *cli) []*cobra.Command {
	action := func(name, short string) *cobra.Command {
		npos := 1
		if name == "create" {
			npos = 0
		}
		return leaf(c, name, short, npos, defineMutation(name), runMutation)
	}
	return []*cobra.Command{
		action("create", "Create an instance"),
		leaf(c, "get", "Show an instance", 1, defineGet, runGet),
		leaf(c, "list", "List instances", 0, defineList, runList),
		leaf(c, "watch", "Stream changes to instances until interrupted", 0, defineWatch, runWatch),
		action("start", "Boot a stopped instance"),
		action("stop", "Shut an instance down"),
		action("restart", "Reboot an instance (--hard: reset it)"),
		action("pause", "Stop an instance's vCPUs, keeping its memory"),
		action("unpause", "Continue a paused instance"),
		action("suspend", "Write an instance's memory to disk and stop it"),
		action("resume", "Restore a suspended instance"),
		action("delete", "Delete an instance and its disk (with a retention window: soft-delete it; --force: at once)"),
		action("deallocate", "Release a stopped instance's host, keeping its disk (start places it again)"),
		action("restore", "Bring a soft-deleted instance back as it was"),
		action("upgrade", "Change an instance's image version or model; rolls back by itself if the guest is not healthy"),
		action("update", "Change an instance's name, labels or recovery policy"),
		action("resize", "Change an instance's vCPUs, memory or disk, in place or on another host"),
		action("confirm-resize", "Keep a resize and drop the old copy"),
		action("revert-resize", "Go back to the instance as it was before a resize"),
		action("extend", "Grow an instance's disk while it runs"),
		action("move", "Move an instance to another host"),
		action("rebuild", "Give an instance a fresh disk from an image, keeping its id, shape and host"),
		action("rescue", "Boot a rescue system with the instance's disk attached second"),
		action("unrescue", "Boot a rescued instance from its own disk again"),
		action("bundle", "Make a stopped instance's disk a new image on its host"),
		leaf(c, "mark-operational", "Declare a stranded instance's guest ready", 1, defineNone, runMarkOperational),
		leaf(c, "set-password", "Set a user's password inside the guest", 1, defineSetPassword, runSetPassword),
		leaf(c, "usage", "Show how long an instance spent in each billing class", 1, defineUsage, runUsage),
	}
}
