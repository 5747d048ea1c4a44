package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// stepTimeout bounds the wait for one event and its watch message.
const stepTimeout = 10 * time.Second

// latency measures event -> coordinator watch: it pauses and resumes the
// domain behind Flotilla's back and times, for each change, the bench's own
// libvirt lifecycle event against the watch message with the new power state.
func (b *bench) latency(ctx context.Context) error {
	logf("creating the latency instance")
	op, err := b.createInstance(ctx, "bench-latency")
	if err != nil {
		return err
	}
	id := op.GetInstanceId()
	if _, err := b.waitOp(ctx, op.GetId(), 3*time.Minute); err != nil {
		return err
	}
	domName := "flotilla-" + id
	b.results.latID = id

	// The XML Flotilla generated, as libvirt keeps it: the virsh side of
	// the create comparison boots exactly this.
	xml, err := virsh(ctx, "dumpxml", "--inactive", domName)
	if err != nil {
		return err
	}
	b.template = domainTemplate{xml: xml, id: id, diskDir: b.agent.DiskDir, runDir: b.agent.RunDir}
	if m := regexp.MustCompile(`<domain type=['"]([a-z]+)['"]`).FindStringSubmatch(xml); m != nil {
		b.domainType = m[1]
	}

	// A booting guest under software emulation takes a core for seconds:
	// measure once it idles.
	b.waitGuestReady(ctx, id)

	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	watch, err := b.openWatch(wctx, id)
	if err != nil {
		return err
	}
	dom, err := b.lv.l.DomainLookupByName(domName)
	if err != nil {
		return fmt.Errorf("libvirt: lookup %s: %w", domName, err)
	}

	steps := []struct {
		what  string
		do    func(golibvirt.Domain) error
		event golibvirt.DomainEventType
		power pb.PowerState
		out   *[]time.Duration
	}{
		{"suspend", b.lv.l.DomainSuspend, golibvirt.DomainEventSuspended, pb.PowerState_POWER_STATE_PAUSED, &b.results.latPaused},
		{"resume", b.lv.l.DomainResume, golibvirt.DomainEventResumed, pb.PowerState_POWER_STATE_RUNNING, &b.results.latRunning},
	}
	logf("event -> watch latency: %d suspend/resume rounds on %s", b.opts.n, domName)
	started := time.Now()
	for i := 0; i < b.opts.n; i++ {
		for _, s := range steps {
			if err := drainWatch(watch); err != nil {
				return err
			}
			b.lv.drain()
			called := time.Now()
			if err := s.do(dom); err != nil {
				return fmt.Errorf("libvirt: %s %s: %w", s.what, domName, err)
			}
			ev, err := b.waitLibvirtEvent(ctx, domName, s.event)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", i, s.what, err)
			}
			m, err := waitWatch(ctx, watch, stepTimeout, "power state "+s.power.String(),
				func(in *pb.Instance) bool { return in.GetPowerState() == s.power }, nil)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", i, s.what, err)
			}
			d := m.at.Sub(ev.at)
			*s.out = append(*s.out, d)
			b.results.latAll = append(b.results.latAll, d)
			b.results.callToEvent = append(b.results.callToEvent, ev.at.Sub(called))
			b.results.latEvents = append(b.results.latEvents, latEvent{calledAt: called, eventAt: ev.at, watchAt: m.at, power: s.power})
		}
	}
	logf("event -> watch latency: done in %s", time.Since(started).Round(time.Millisecond))
	cancelWatch()

	logf("deleting the latency instance")
	return b.deleteInstance(ctx, id)
}

// waitLibvirtEvent waits for the bench's own subscription to deliver event
// for domain name.
func (b *bench) waitLibvirtEvent(ctx context.Context, name string, event golibvirt.DomainEventType) (lvEvent, error) {
	t := time.NewTimer(stepTimeout)
	defer t.Stop()
	for {
		select {
		case ev := <-b.lv.events:
			if ev.name == name && ev.event == event {
				return ev, nil
			}
		case <-t.C:
			return lvEvent{}, fmt.Errorf("no libvirt lifecycle event %d for %s within %s", event, name, stepTimeout)
		case <-ctx.Done():
			return lvEvent{}, ctx.Err()
		}
	}
}

// waitGuestReady waits (at most 90 s) for the guest's init to print its
// ready line on the console; it only warns if it does not.
func (b *bench) waitGuestReady(ctx context.Context, id string) {
	log := filepath.Join(b.agent.RunDir, id+".console.log")
	err := poll(ctx, 90*time.Second, "the guest to print FLOTILLA-GUEST-READY", func() (bool, error) {
		data, err := os.ReadFile(log)
		return err == nil && strings.Contains(string(data), "FLOTILLA-GUEST-READY"), nil
	})
	if err != nil && ctx.Err() == nil {
		logf("warning: %v (measuring anyway)", err)
	}
}
