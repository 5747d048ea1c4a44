package agentlink

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// connectSeeds are one message of each kind an agent sends.
func connectSeeds() []*agentv1.ConnectRequest {
	at := timestamppb.New(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	dom := &agentv1.DomainState{InstanceId: "i-1", State: pb.PowerState_POWER_STATE_RUNNING, Reason: "booted", ObservedAt: at}
	result := &agentv1.StepResult{OperationId: "op-1", StepId: "s-1", HostEpoch: 1, Succeeded: false,
		Fault: &pb.Fault{Code: "BOOM", Message: "it broke", Time: at, HostId: "h1"}, State: dom}
	return []*agentv1.ConnectRequest{
		{Msg: &agentv1.ConnectRequest_Register{Register: &agentv1.Register{HostId: "h1", HypervisorKind: "fake", AgentVersion: "1.0",
			Capacity: &pb.Resources{Vcpus: 8, MemoryMib: 8192, DiskGib: 100}, Inventory: []*agentv1.DomainState{dom},
			Labels: map[string]string{"rack": "a"}, PeerAddress: "127.0.0.1:7001", ManagedNetworks: true, Bridges: []string{"br0"}}}},
		{Msg: &agentv1.ConnectRequest_PowerEvent{PowerEvent: dom}},
		{Msg: &agentv1.ConnectRequest_Resync{Resync: &agentv1.Inventory{Domains: []*agentv1.DomainState{dom}, ObservedAt: at}}},
		{Msg: &agentv1.ConnectRequest_StepResult{StepResult: result}},
		{Msg: &agentv1.ConnectRequest_StepReport{StepReport: &agentv1.StepReport{OperationId: "op-1", StepId: "s-1",
			State: agentv1.StepReportState_STEP_REPORT_STATE_FINISHED, Result: result}}},
		{Msg: &agentv1.ConnectRequest_CopyProgress{CopyProgress: &agentv1.CopyProgress{OperationId: "op-1", StepId: "s-1", InstanceId: "i-1",
			BytesDone: 10, BytesTotal: 100, BytesPerSecond: 5, BytesSent: 10}}},
		{Msg: &agentv1.ConnectRequest_GuestReport{GuestReport: &agentv1.GuestReport{InstanceId: "i-1", State: agentv1.GuestState_GUEST_STATE_READY,
			Stage: "boot", ObservedAt: at, GuestVersion: "2", Protocol: 2, BootId: "b1", Os: "linux", OsVersion: "6", Kernel: "6.1"}}},
		{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}},
	}
}

// FuzzConnectRequest feeds any message an agent could send through the
// coordinator's checks and conversions (registration, command) and, when
// they accept it, applies the command they make to a replica's state
// machine: nothing an agent sends may crash the coordinator or, through
// the log, every replica.
func FuzzConnectRequest(f *testing.F) {
	for _, m := range connectSeeds() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Date(2026, 12, 7, 12, 0, 1, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m agentv1.ConnectRequest
		if proto.Unmarshal(data, &m) != nil {
			return
		}
		store := state.New(0)
		machine := fsm.New(store, quiet)
		apply := func(typ string, body any) fsm.Result {
			cmd, err := fsm.Encode(typ, now, body)
			if err != nil {
				return fsm.Result{Err: err} // refused before the log: the session ends
			}
			return machine.ApplyBytes(cmd)
		}
		apply(fsm.TypeSetLogVersion, fsm.SetLogVersion{Version: fsm.SupportedLogVersion})
		s := New(Config{Store: store, Logger: quiet, Now: func() time.Time { return now }})
		if reg := m.GetRegister(); reg != nil {
			if cmd, err := s.registration(reg, &clock{s: s, host: reg.HostId}); err == nil {
				apply(fsm.TypeRegisterHost, cmd)
			}
			return
		}
		res := apply(fsm.TypeRegisterHost, fsm.RegisterHost{Host: state.Host{ID: "h1", Kind: "fake",
			Capacity: state.Resources{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}})
		epoch, _ := res.Value.(uint64)
		typ, body, err := s.command(&session{hostID: "h1", epoch: epoch, clock: &clock{s: s, host: "h1"}}, &m)
		if err != nil || typ == "" {
			return
		}
		apply(typ, body)
	})
}
