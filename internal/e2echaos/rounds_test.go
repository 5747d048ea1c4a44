package e2echaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/coordinator/inproc"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/netfault"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Round counts and the seed come from the environment so that `make chaos`
// runs the soak (and a failing seed is replayed); `go test` runs
// defaultRounds with defaultSeed.
const (
	defaultRounds = 10
	defaultSeed   = 19
	heartbeat     = 200 * time.Millisecond
	// stepDelay is how long every hypervisor call takes, so that a fault
	// 0..maxFaultDelay after acceptance lands before, in or after a step.
	stepDelay     = 100 * time.Millisecond
	maxFaultDelay = 400 * time.Millisecond
	// settleBound bounds a round's recovery: past it the round's
	// violations are counted, not waited out.
	settleBound = 20 * time.Second
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// faultsInProcess are the faults the in-process cluster (one coordinator,
// agents on fake hypervisors) can inject: leader and follower kills need
// a cluster of coordinator processes (TestChaosRoundsCluster).
var faultsInProcess = []Fault{FaultAgentKill, FaultGuestPowerOff, FaultLibvirtdRestart, FaultPartition}

// partitionHold is how long a partition lasts: past the coordinator's
// patience with a silent agent (a few heartbeats), so that the host is
// taken as lost and comes back.
const partitionHold = 6 * heartbeat

// TestChaosRounds runs rounds of a random workload (creates, stops,
// starts, pauses, unpauses, moves, deletes) under random faults on an
// in-process cluster of two hosts with fake hypervisors, checking every
// invariant after each round.
func TestChaosRounds(t *testing.T) {
	rounds := envInt("FLOTILLA_CHAOS_ROUNDS", defaultRounds)
	seed := uint64(envInt("FLOTILLA_CHAOS_SEED", defaultSeed))
	// The fake's "libvirtd restart" (the hypervisor unreachable, every
	// subscription dropped) is harmless to others: always allowed here.
	in := NewInjector(seed, faultsInProcess, true)
	t.Logf("chaos: seed %d, %d rounds, faults %v", seed, rounds, in.Kinds())
	fmt.Printf("chaos: seed %d, %d rounds, faults %v\n", seed, rounds, in.Kinds())

	c := inproc.Start(t, inproc.Options{Hosts: 2, HeartbeatInterval: heartbeat, Partitionable: true, Moves: true})
	w := &workload{t: t, in: in, acked: map[string]bool{}, grace: heartbeat, moves: true,
		instances: c.Instances, operations: c.Operations,
		digests: func() map[string]string {
			// One replica in process: its digest stands for all (the
			// process cluster's rounds compare three).
			d, _ := c.Coordinator.Store.Digest()
			return map[string]string{"inproc": d}
		}}
	for _, h := range c.Hosts {
		w.hosts = append(w.hosts, chaosHost{id: h.ID, driver: h.Driver, restart: func() { c.RestartHost(h.ID) },
			made: h.Made, link: h.Link})
	}
	w.run(rounds, seed)
}

// run runs the rounds and prints the table.
func (w *workload) run(rounds int, seed uint64) {
	t, in := w.t, w.in
	for _, h := range w.hosts {
		for _, m := range []string{"Create", "Start", "Shutdown", "Pause", "Resume", "Delete"} {
			h.driver.SetDelay(m, stepDelay)
		}
	}
	stats := NewStats()
	for r := range rounds {
		fault, delay := in.Next(maxFaultDelay)
		op := w.next()
		injected := w.inject(fault, delay)
		rec, vs := w.settle(op, injected)
		stats.Add(fault, len(vs), rec)
		for _, v := range vs {
			t.Errorf("round %d (seed %d, %s after %s, op %s %s): %s", r, seed, fault, delay, op.GetKind(), op.GetId(), v)
		}
	}
	t.Logf("\n%s", stats.Table())
	fmt.Print(stats.Table())
	fmt.Println(w.outcomes())
	if stats.Rounds() != rounds {
		t.Fatalf("%d rounds recorded, want %d", stats.Rounds(), rounds)
	}
}

// outcomes counts the workload's operations by kind and end.
func (w *workload) outcomes() string {
	n := map[string]int{}
	for id := range w.acked {
		op, err := w.operations.GetOperation(context.Background(), &pb.GetOperationRequest{Id: id})
		if err != nil {
			n["unreadable"]++
			continue
		}
		n[strings.TrimPrefix(op.GetKind().String(), "OPERATION_KIND_")+" "+strings.TrimPrefix(op.GetState().String(), "OPERATION_STATE_")]++
	}
	var out []string
	for _, k := range sortedKeys(n) {
		out = append(out, fmt.Sprintf("%s: %d", k, n[k]))
	}
	return "operations: " + strings.Join(out, ", ")
}

// workload drives the instances of one cluster.
type workload struct {
	t          *testing.T
	in         *Injector
	instances  pb.InstanceServiceClient
	operations pb.OperationServiceClient
	hosts      []chaosHost
	digests    func() map[string]string // every replica's, at one revision
	// killLeader and killFollower SIGKILL a coordinator and start it again;
	// nil where the cluster has one coordinator in process.
	killLeader, killFollower func()
	grace                    time.Duration   // a heartbeat
	acked                    map[string]bool // operation ids acknowledged
	seq                      int
	moves                    bool // the agents move disks to each other
}

// chaosHost is one agent and its fake hypervisor, which outlives the agent.
type chaosHost struct {
	id      string
	driver  *fake.Driver
	restart func() // the agent killed and started again
	// made counts the domains an operation made on the host; nil where
	// the hypervisor does not count them.
	made func(opID string) map[string]int
	link *netfault.Relay // between the agent and the coordinators; nil: not partitionable
}

const maxInstances = 4

// next starts one operation allowed in the current status of a random
// instance (or a create) and returns it as acknowledged.
func (w *workload) next() *pb.Operation {
	ctx := context.Background()
	var list *pb.ListInstancesResponse
	var err error
	for try := 0; ; try++ {
		list, err = w.instances.ListInstances(ctx, &pb.ListInstancesRequest{})
		if status.Code(err) != codes.Unavailable || try == 300 {
			break
		}
		time.Sleep(100 * time.Millisecond) // a coordinator restarting
	}
	if err != nil {
		w.t.Fatal(err)
	}
	var live []*pb.Instance
	for _, i := range list.GetInstances() {
		if i.GetStatus() != pb.Status_STATUS_DELETED {
			live = append(live, i)
		}
	}
	w.seq++
	req := fmt.Sprintf("chaos-%d-%d", w.in.Seed, w.seq) // a retry after a lost answer is the same request
	var do func() (*pb.Operation, error)
	if len(live) < maxInstances && (len(live) == 0 || w.in.IntN(3) == 0) {
		do = func() (*pb.Operation, error) {
			return w.instances.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: fmt.Sprintf("chaos-%d", w.seq), RequestId: req,
				Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 256, Image: "flotilla-test"}})
		}
	} else {
		i := live[w.in.IntN(len(live))]
		id := i.GetId()
		switch i.GetStatus() {
		case pb.Status_STATUS_RUNNING, pb.Status_STATUS_STOPPED:
			if to := w.otherHost(i.GetHostId()); to != "" && w.in.IntN(4) == 0 {
				do = func() (*pb.Operation, error) {
					return w.instances.MoveInstance(ctx, &pb.MoveInstanceRequest{Id: id, RequestId: req, TargetHostId: to, GracefulTimeout: durationpb.New(time.Second)})
				}
				break
			}
			if i.GetStatus() == pb.Status_STATUS_STOPPED {
				do = w.stoppedAction(ctx, id, req)
				break
			}
			if w.in.IntN(3) == 0 {
				do = func() (*pb.Operation, error) {
					return w.instances.PauseInstance(ctx, &pb.PauseInstanceRequest{Id: id, RequestId: req})
				}
			} else {
				do = func() (*pb.Operation, error) {
					return w.instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: id, RequestId: req, Force: true, GracefulTimeout: durationpb.New(time.Second)})
				}
			}
		case pb.Status_STATUS_PAUSED:
			do = func() (*pb.Operation, error) {
				return w.instances.UnpauseInstance(ctx, &pb.UnpauseInstanceRequest{Id: id, RequestId: req})
			}
		case pb.Status_STATUS_UNEXPECTED_SHUTOFF:
			do = w.stoppedAction(ctx, id, req)
		default: // ERROR, CRASHED, ...: deleting is always allowed
			do = func() (*pb.Operation, error) {
				return w.instances.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id, RequestId: req})
			}
		}
	}
	var op *pb.Operation
	for try := 0; ; try++ {
		op, err = do()
		if status.Code(err) != codes.Unavailable || try == 300 {
			break
		}
		time.Sleep(100 * time.Millisecond) // a coordinator restarting
	}
	if err != nil {
		w.t.Fatalf("workload: %v", err)
	}
	w.acked[op.GetId()] = true
	return op
}

// stoppedAction deletes or starts a shut-off instance.
func (w *workload) stoppedAction(ctx context.Context, id, req string) func() (*pb.Operation, error) {
	if w.in.IntN(3) == 0 {
		return func() (*pb.Operation, error) {
			return w.instances.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id, RequestId: req})
		}
	}
	return func() (*pb.Operation, error) {
		return w.instances.StartInstance(ctx, &pb.StartInstanceRequest{Id: id, RequestId: req})
	}
}

// otherHost is a host to move an instance on from to, or "" when the
// workload does not move.
func (w *workload) otherHost(from string) string {
	if !w.moves {
		return ""
	}
	for _, h := range w.hosts {
		if h.id != from {
			return h.id
		}
	}
	return ""
}

// inject waits delay after the acceptance (the fault's timing) and
// injects the fault; it returns when the fault was injected.
func (w *workload) inject(f Fault, delay time.Duration) time.Time {
	time.Sleep(delay) // the fault's timing, not a wait for a condition
	at := time.Now()
	switch f {
	case FaultLeaderKill:
		w.killLeader()
	case FaultFollowerKill:
		w.killFollower()
	case FaultAgentKill:
		w.hosts[w.in.IntN(len(w.hosts))].restart()
	case FaultGuestPowerOff:
		for _, h := range w.hosts {
			doms, _ := h.driver.List(context.Background())
			for _, d := range doms {
				if d.State == "running" {
					_ = h.driver.PowerOff(d.ID)
					return at
				}
			}
		}
	case FaultPartition:
		var links []*netfault.Relay
		for _, h := range w.hosts {
			if h.link != nil {
				links = append(links, h.link)
			}
		}
		l := links[w.in.IntN(len(links))]
		l.Cut()
		time.Sleep(partitionHold) // how long the partition lasts
		l.Heal()
	case FaultLibvirtdRestart:
		// The fake hypervisor's restart: unreachable a moment, every
		// subscription dropped, domains kept.
		h := w.hosts[w.in.IntN(len(w.hosts))]
		h.driver.SetUnavailable(true)
		time.Sleep(50 * time.Millisecond) // how long the daemon is down
		h.driver.SetUnavailable(false)
	}
	return at
}

// settle waits until the round's operation is done and every invariant
// holds (or settleBound passes) and returns the recovery time, from the
// fault, and what still fails.
func (w *workload) settle(op *pb.Operation, since time.Time) (time.Duration, []Violation) {
	deadline := time.Now().Add(settleBound)
	for {
		o, ok := w.observe()
		if !ok && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // the cluster is restarting a member
			continue
		}
		vs := Check(o)
		done := o.Ops[op.GetId()].Done
		if (done && len(vs) == 0) || time.Now().After(deadline) {
			if !done {
				vs = append(vs, Violation{"op-not-done", fmt.Sprintf("operation %s not done %s after the fault", op.GetId(), settleBound)})
			}
			return time.Since(since), vs
		}
		time.Sleep(20 * time.Millisecond) // polling the cluster's state
	}
}

// expectPower is the power state a settled status says the host shows.
var expectPower = map[pb.Status]string{
	pb.Status_STATUS_RUNNING:            "running",
	pb.Status_STATUS_STOPPED:            "shut-off",
	pb.Status_STATUS_UNEXPECTED_SHUTOFF: "shut-off",
	pb.Status_STATUS_PAUSED:             "paused",
	pb.Status_STATUS_SUSPENDED:          "saved-to-disk",
	pb.Status_STATUS_DELETED:            "no-domain",
}

// observe reads the cluster and the hosts; false when the cluster did not
// answer (a coordinator restarting): the caller reads again.
func (w *workload) observe() (Observed, bool) {
	ctx := context.Background()
	o := Observed{Now: time.Now(), Grace: w.grace, Ops: map[string]OpView{}, Instances: map[string]InstanceView{},
		Domains: map[string]map[string]string{}, Digests: map[string]string{}}
	for id := range w.acked {
		op, err := w.operations.GetOperation(ctx, &pb.GetOperationRequest{Id: id})
		if status.Code(err) == codes.NotFound {
			o.Ops[id] = OpView{}
			continue
		} else if err != nil {
			return o, false
		}
		made := map[string]int{}
		for _, h := range w.hosts {
			if h.made != nil {
				for how, n := range h.made(id) {
					made[how] += n
				}
			}
		}
		o.Ops[id] = OpView{Found: true, Done: op.GetDone(), Deadline: op.GetDeadline().AsTime(), Made: made}
	}
	list, err := w.instances.ListInstances(ctx, &pb.ListInstancesRequest{})
	if err != nil {
		return o, false
	}
	for _, i := range list.GetInstances() {
		v := InstanceView{Status: i.GetStatus().String(), HostID: i.GetHostId(), Deleted: i.GetStatus() == pb.Status_STATUS_DELETED,
			Transitional: i.GetCurrentOperationId() != "", Expect: expectPower[i.GetStatus()]}
		if v.Transitional {
			if op, err := w.operations.GetOperation(ctx, &pb.GetOperationRequest{Id: i.GetCurrentOperationId()}); err == nil {
				v.Deadline = op.GetDeadline().AsTime()
			}
		}
		o.Instances[i.GetId()] = v
	}
	for _, h := range w.hosts {
		doms, err := h.driver.List(ctx)
		if err != nil {
			continue // unreachable this instant: the next poll reads it
		}
		o.Domains[h.id] = map[string]string{}
		for _, d := range doms {
			o.Domains[h.id][d.ID] = string(d.State)
		}
	}
	o.Digests = w.digests()
	return o, true
}
