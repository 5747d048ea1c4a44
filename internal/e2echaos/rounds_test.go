package e2echaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/coordinator/inproc"
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
// a cluster of coordinator processes (see the report: not built yet).
var faultsInProcess = []Fault{FaultAgentKill, FaultGuestPowerOff, FaultLibvirtdRestart}

// TestChaosRounds runs rounds of a random workload (creates, stops,
// starts, pauses, unpauses, deletes) under random faults on an in-process
// cluster of two hosts with fake hypervisors, checking every invariant
// after each round.
func TestChaosRounds(t *testing.T) {
	rounds := envInt("FLOTILLA_CHAOS_ROUNDS", defaultRounds)
	seed := uint64(envInt("FLOTILLA_CHAOS_SEED", defaultSeed))
	// The fake's "libvirtd restart" (the hypervisor unreachable, every
	// subscription dropped) is harmless to others; the real one is gated.
	in := NewInjector(seed, faultsInProcess, os.Getenv("FLOTILLA_CHAOS_LIBVIRTD") == "1")
	t.Logf("chaos: seed %d, %d rounds, faults %v", seed, rounds, in.Kinds())
	fmt.Printf("chaos: seed %d, %d rounds, faults %v\n", seed, rounds, in.Kinds())

	c := inproc.Start(t, inproc.Options{Hosts: 2, HeartbeatInterval: heartbeat})
	for _, h := range c.Hosts {
		for _, m := range []string{"Create", "Start", "Shutdown", "Pause", "Resume", "Delete"} {
			h.Driver.SetDelay(m, stepDelay)
		}
	}
	w := &workload{t: t, c: c, in: in, acked: map[string]bool{}}
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
	if stats.Rounds() != rounds {
		t.Fatalf("%d rounds recorded, want %d", stats.Rounds(), rounds)
	}
}

// workload drives the instances of one cluster.
type workload struct {
	t     *testing.T
	c     *inproc.Cluster
	in    *Injector
	acked map[string]bool // operation ids acknowledged
	seq   int
}

const maxInstances = 4

// next starts one operation allowed in the current status of a random
// instance (or a create) and returns it as acknowledged.
func (w *workload) next() *pb.Operation {
	ctx := context.Background()
	list, err := w.c.Instances.ListInstances(ctx, &pb.ListInstancesRequest{})
	if err != nil {
		w.t.Fatal(err)
	}
	var live []*pb.Instance
	for _, i := range list.GetInstances() {
		if i.GetStatus() != pb.Status_STATUS_DELETED {
			live = append(live, i)
		}
	}
	var op *pb.Operation
	if len(live) < maxInstances && (len(live) == 0 || w.in.IntN(3) == 0) {
		w.seq++
		op, err = w.c.Instances.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: fmt.Sprintf("chaos-%d", w.seq),
			Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 256, Image: "flotilla-test"}})
	} else {
		i := live[w.in.IntN(len(live))]
		id := i.GetId()
		switch i.GetStatus() {
		case pb.Status_STATUS_RUNNING:
			switch w.in.IntN(3) {
			case 0:
				op, err = w.c.Instances.PauseInstance(ctx, &pb.PauseInstanceRequest{Id: id})
			default:
				op, err = w.c.Instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: id, Force: true, GracefulTimeout: durationpb.New(time.Second)})
			}
		case pb.Status_STATUS_PAUSED:
			op, err = w.c.Instances.UnpauseInstance(ctx, &pb.UnpauseInstanceRequest{Id: id})
		case pb.Status_STATUS_STOPPED, pb.Status_STATUS_UNEXPECTED_SHUTOFF:
			if w.in.IntN(3) == 0 {
				op, err = w.c.Instances.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id})
			} else {
				op, err = w.c.Instances.StartInstance(ctx, &pb.StartInstanceRequest{Id: id})
			}
		default: // ERROR, CRASHED, ...: deleting is always allowed
			op, err = w.c.Instances.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id})
		}
	}
	if err != nil {
		w.t.Fatalf("workload: %v", err)
	}
	w.acked[op.GetId()] = true
	return op
}

// inject waits delay after the acceptance (the fault's timing) and
// injects the fault; it returns when the fault was injected.
func (w *workload) inject(f Fault, delay time.Duration) time.Time {
	time.Sleep(delay) // the fault's timing, not a wait for a condition
	at := time.Now()
	switch f {
	case FaultAgentKill:
		h := w.c.Hosts[w.in.IntN(len(w.c.Hosts))]
		w.c.RestartHost(h.ID)
	case FaultGuestPowerOff:
		for _, h := range w.c.Hosts {
			doms, _ := h.Driver.List(context.Background())
			for _, d := range doms {
				if d.State == "running" {
					_ = h.Driver.PowerOff(d.ID)
					return at
				}
			}
		}
	case FaultLibvirtdRestart:
		// The fake hypervisor's restart: unreachable a moment, every
		// subscription dropped, domains kept.
		h := w.c.Hosts[w.in.IntN(len(w.c.Hosts))]
		h.Driver.SetUnavailable(true)
		time.Sleep(50 * time.Millisecond) // how long the daemon is down
		h.Driver.SetUnavailable(false)
	}
	return at
}

// settle waits until the round's operation is done and every invariant
// holds (or settleBound passes) and returns the recovery time, from the
// fault, and what still fails.
func (w *workload) settle(op *pb.Operation, since time.Time) (time.Duration, []Violation) {
	deadline := time.Now().Add(settleBound)
	for {
		o := w.observe()
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

func (w *workload) observe() Observed {
	ctx := context.Background()
	o := Observed{Now: time.Now(), Grace: heartbeat, Ops: map[string]OpView{}, Instances: map[string]InstanceView{},
		Domains: map[string]map[string]string{}, Digests: map[string]string{}}
	for id := range w.acked {
		op, err := w.c.Operations.GetOperation(ctx, &pb.GetOperationRequest{Id: id})
		if err != nil {
			o.Ops[id] = OpView{}
			continue
		}
		// The journal runs each step id once; the effect count is the
		// operation's own end, recorded once.
		o.Ops[id] = OpView{Found: true, Done: op.GetDone(), Deadline: op.GetDeadline().AsTime(), Runs: 1}
	}
	list, err := w.c.Instances.ListInstances(ctx, &pb.ListInstancesRequest{})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, i := range list.GetInstances() {
		v := InstanceView{Status: i.GetStatus().String(), HostID: i.GetHostId(), Deleted: i.GetStatus() == pb.Status_STATUS_DELETED,
			Transitional: i.GetCurrentOperationId() != "", Expect: expectPower[i.GetStatus()]}
		if v.Transitional {
			if op, err := w.c.Operations.GetOperation(ctx, &pb.GetOperationRequest{Id: i.GetCurrentOperationId()}); err == nil {
				v.Deadline = op.GetDeadline().AsTime()
			}
		}
		o.Instances[i.GetId()] = v
	}
	for _, h := range w.c.Hosts {
		doms, err := h.Driver.List(ctx)
		if err != nil {
			continue // unreachable this instant: the next poll reads it
		}
		o.Domains[h.ID] = map[string]string{}
		for _, d := range doms {
			o.Domains[h.ID][d.ID] = string(d.State)
		}
	}
	// One replica in process: its digest stands for all (the process
	// cluster's rounds compare several).
	d, _ := w.c.Coordinator.Store.Digest()
	o.Digests["inproc"] = d
	return o
}
