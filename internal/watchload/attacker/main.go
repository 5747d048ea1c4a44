// Command attacker is internal/watchload's attacker and prober, each run
// as a process of its own built without the race detector (so that the
// calls timed do not wait behind the watchers in one process, and no
// race detector's slowness is measured):
//
//	attacker watch ADDR REVISION N
//
// opens N watchers of ADDR from revision 1, each reading of every message
// only its revision, prints "caught up" and exits 0 once each has reached
// REVISION, or prints why not and exits 1;
//
//	attacker probe ADDR ID
//
// times GetInstance(ID) calls on ADDR one after the other, and for each
// line "mark" on its standard input (once it has timed at least 400 calls
// since the previous mark or "reset") prints "p99=NS calls=N" of those
// calls; "reset" forgets the calls timed so far.
//
// Both stop when their standard input closes (the test ended).
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func main() {
	var code int
	switch {
	case len(os.Args) == 5 && os.Args[1] == "watch":
		code = watch(os.Args[2], os.Args[3], os.Args[4])
	case len(os.Args) == 4 && os.Args[1] == "probe":
		code = probe(os.Args[2], os.Args[3])
	default:
		fmt.Println("usage: attacker watch ADDR REVISION N | attacker probe ADDR ID")
		code = 2
	}
	os.Exit(code)
}

func watch(addr, revText, nText string) int {
	last, err := strconv.ParseInt(revText, 10, 64)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	watchers, err := strconv.Atoi(nText)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	var conns []*grpc.ClientConn
	for range 4 {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer cc.Close()
		conns = append(conns, cc)
	}
	errs := make(chan error, watchers)
	var wg sync.WaitGroup
	for i := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- replay(ctx, conns[i%len(conns)], last)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			fmt.Println(err)
			return 1
		}
	}
	fmt.Println("caught up")
	return 0
}

// minCalls is how many calls a mark waits to have timed.
const minCalls = 400

func probe(addr, id string) int {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer cc.Close()
	c := pb.NewInstanceServiceClient(cc)
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	var took []time.Duration
	marked := false
	for {
		select {
		case cmd, ok := <-cmds:
			switch {
			case !ok:
				return 0
			case cmd == "reset":
				took = took[:0]
			case cmd == "mark":
				marked = true
			}
		default:
		}
		if marked && len(took) >= minCalls {
			fmt.Printf("p99=%d calls=%d\n", p99(took), len(took))
			took, marked = took[:0], false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		began := time.Now()
		_, err := c.GetInstance(ctx, &pb.GetInstanceRequest{Id: id})
		took = append(took, time.Since(began))
		cancel()
		if err != nil {
			fmt.Printf("get %s: %v\n", id, err)
			return 1
		}
	}
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// replay watches from revision 1 until it has seen revision last,
// reading of each message only its revision.
func replay(ctx context.Context, cc *grpc.ClientConn, last int64) error {
	desc := &grpc.StreamDesc{StreamName: "WatchInstances", ServerStreams: true}
	s, err := cc.NewStream(ctx, desc, pb.InstanceService_WatchInstances_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(&pb.WatchInstancesRequest{StartRevision: 1}); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		var m raw
		if err := s.RecvMsg(&m); err != nil {
			return err
		}
		if m.revision >= last {
			return nil
		}
	}
}

// raw is a received message of which only the revision is read.
type raw struct{ revision int64 }

// rawCodec encodes requests as protobuf and reads from each response
// only WatchInstancesResponse.revision (field 1).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }

func (rawCodec) Unmarshal(b []byte, v any) error {
	m := v.(*raw)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			r, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			m.revision = int64(r)
			return nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}
