package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// domainTemplate is the domain XML Flotilla generated for one instance
// (virsh dumpxml --inactive), to boot the same machine through virsh.
type domainTemplate struct {
	xml     string
	id      string // the instance it came from
	diskDir string // the agent's disk dir
	runDir  string // the agent's run dir
}

var uuidElem = regexp.MustCompile(`\s*<uuid>[^<]*</uuid>`)

// render gives the template a new name, no UUID (libvirt makes one), the
// disk overlay disk and its console log and guest socket in runDir.
func (t domainTemplate) render(name, disk, runDir string) (string, error) {
	x := uuidElem.ReplaceAllString(t.xml, "")
	x = strings.ReplaceAll(x, "<name>flotilla-"+t.id+"</name>", "<name>"+name+"</name>")
	x = strings.ReplaceAll(x, filepath.Join(t.diskDir, t.id+".qcow2"), disk)
	x = strings.ReplaceAll(x, filepath.Join(t.runDir, t.id+"."), filepath.Join(runDir, name+"."))
	if strings.Contains(x, t.id) {
		return "", fmt.Errorf("domain XML still names instance %s after rewriting:\n%s", t.id, x)
	}
	return x, nil
}

// createVsVirsh times, M times interleaved, CreateInstance until the watch
// shows RUNNING against `virsh create` of the same XML until virsh exits.
func (b *bench) createVsVirsh(ctx context.Context) error {
	if b.template.xml == "" {
		return fmt.Errorf("no domain XML template")
	}
	vdir := filepath.Join(b.workDir, "virsh")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return err
	}
	virshLive := map[string]bool{}
	b.cl.add(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for name := range virshLive {
			_, _ = virsh(ctx, "destroy", name)
		}
	})

	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	watch, err := b.openWatch(wctx, "")
	if err != nil {
		return err
	}

	backing := filepath.Join(b.opts.imageDir, "flotilla-test", "disk.qcow2")
	// virshOnce boots the template through virsh and destroys it again.
	virshOnce := func(i int, timed bool) error {
		name := fmt.Sprintf("flbench-%d-%d", os.Getpid(), i)
		disk := filepath.Join(vdir, name+".qcow2")
		xml, err := b.template.render(name, disk, b.runDir)
		if err != nil {
			return err
		}
		xmlPath := filepath.Join(vdir, name+".xml")
		if err := os.WriteFile(xmlPath, []byte(xml), 0o644); err != nil {
			return err
		}
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, disk).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img create: %v: %s", err, out)
		}
		overlay := time.Since(t0)

		virshLive[name] = true
		cmd := exec.CommandContext(ctx, "virsh", "-q", "-c", "qemu:///system", "create", xmlPath)
		t0 = time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(t0)
		if err != nil {
			return fmt.Errorf("virsh create: %v: %s", err, out)
		}
		if timed {
			b.results.virsh = append(b.results.virsh, took)
			b.results.overlay = append(b.results.overlay, overlay)
		}
		if _, err := virsh(ctx, "destroy", name); err != nil {
			return err
		}
		delete(virshLive, name)
		for _, p := range []string{disk, xmlPath, filepath.Join(b.runDir, name+".console.log"), filepath.Join(b.runDir, name+".guest.sock")} {
			_ = os.Remove(p)
		}
		return nil
	}

	// One untimed virsh run: Flotilla's side is already warm from the
	// latency instance.
	if err := virshOnce(0, false); err != nil {
		return err
	}

	logf("create -> RUNNING: %d rounds of Flotilla then virsh", b.opts.m)
	for i := 1; i <= b.opts.m; i++ {
		// (a) through Flotilla: from just before the RPC until the watch
		// shows the instance RUNNING.
		if err := drainWatch(watch); err != nil {
			return err
		}
		t0 := time.Now()
		op, err := b.createInstance(ctx, fmt.Sprintf("bench-create-%d", i))
		if err != nil {
			return err
		}
		id := op.GetInstanceId()
		mine := func(in *pb.Instance) bool { return in.GetId() == id }
		m, err := waitWatch(ctx, watch, 3*time.Minute, id+" RUNNING",
			func(in *pb.Instance) bool { return mine(in) && in.GetStatus() == pb.Status_STATUS_RUNNING },
			func(in *pb.Instance) bool {
				return mine(in) && (in.GetStatus() == pb.Status_STATUS_ERROR || in.GetStatus() == pb.Status_STATUS_DELETED)
			})
		if err != nil {
			return err
		}
		b.results.flotilla = append(b.results.flotilla, m.at.Sub(t0))
		b.results.createIDs = append(b.results.createIDs, id)
		if _, err := b.waitOp(ctx, op.GetId(), time.Minute); err != nil {
			return err
		}
		if err := b.deleteInstance(ctx, id); err != nil {
			return err
		}

		// (b) virsh create of the same XML, timed from exec to exit.
		if err := virshOnce(i, true); err != nil {
			return err
		}
	}
	return nil
}
