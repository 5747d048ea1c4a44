package e2eimages

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// catalogueImage is an image as GetImage and ListImages show it.
type catalogueImage struct {
	status, sha256, fault string
	hosts                 []string
}

func getImage(t *testing.T, g *testenv.Grpcurl, name string) (catalogueImage, error) {
	t.Helper()
	m, err := g.Call("flotilla.v1.ImageService/GetImage", map[string]any{"name": name})
	if err != nil {
		return catalogueImage{}, err
	}
	im := catalogueImage{status: testenv.Str(m, "status"), sha256: testenv.Str(m, "sha256"), fault: testenv.Str(m, "fault", "code")}
	if hs, ok := m["hosts"].([]any); ok {
		for _, h := range hs {
			im.hosts = append(im.hosts, fmt.Sprint(h))
		}
	}
	return im, nil
}

// waitImage waits until the catalogue shows the image as cond wants it.
func waitImage(t *testing.T, g *testenv.Grpcurl, name, what string, cond func(catalogueImage) bool) catalogueImage {
	t.Helper()
	var im catalogueImage
	testenv.Eventually(t, 2*time.Minute, "image "+name+" to be "+what, func() bool {
		var err error
		im, err = getImage(t, g, name)
		return err == nil && cond(im)
	})
	return im
}

// copyImageFiles copies the test guest image's files into dir (a host's
// upload directory, as the test sees it).
func copyImageFiles(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"disk.qcow2", "vmlinuz", "initrd.img", "cmdline"} {
		b, err := os.ReadFile(filepath.Join(testenv.ImageDir(), guestImage, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// An image imported from a file on one test bed host is fetched by the
// other when a create is placed there (a visible fetch-image step), and
// boots; an import whose path leads out of the image directory fails
// without touching anything; the image cannot be deleted while the
// instance uses it, and the refusal names the instance.
func TestImageImportedOnOneHostFetchedByAnother(t *testing.T) {
	tb := testenv.StartTestbed(t, 2)
	dir := t.TempDir()
	// Mutual TLS, as a fleet has it: the coordinator is on the bridge, and
	// the image pulls identify their agents.
	ca, err := mtls.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, role string, hosts ...string) []string {
		f, err := ca.Issue(name, role, hosts...)
		if err != nil {
			t.Fatal(err)
		}
		return []string{"--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA}
	}
	coord := testenv.StartCoordinatorAt(t, dir, tb.FreeAddr(t), append(issue("c1", mtls.RoleCoordinator, tb.BridgeAddr), "--agent-heartbeat-interval=500ms")...)
	admin, err := ca.Issue("alice", "admin")
	if err != nil {
		t.Fatal(err)
	}
	g := testenv.NewGrpcurlTLS(t, coord.Addr, admin)
	coord.WaitReady(t, g)
	a, b := tb.Hosts[0], tb.Hosts[1]
	var agents []*testenv.Agent
	for _, h := range tb.Hosts {
		agents = append(agents, testenv.StartTestbedAgent(t, dir, coord.Addr, h, issue(h.Name, mtls.RoleAgent, h.Addr)...))
		testenv.WaitHost(t, g, h.Name, 0)
	}
	// Both hosts came with the test guest image: their registrations said so.
	waitImage(t, g, guestImage, "held by both hosts", func(im catalogueImage) bool {
		return slices.Equal(im.hosts, []string{a.Name, b.Name}) && im.sha256 != ""
	})

	// Import from a file on tb-1.
	name := fmt.Sprintf("imported-%d", time.Now().UnixNano())
	upload := a.Path(filepath.Join(testenv.TestbedFlotillaDir, "images", "uploads", name))
	copyImageFiles(t, upload)
	if _, err := g.Call("flotilla.v1.ImageService/ImportImage", map[string]any{"name": name, "hostId": a.Name, "path": "../" + name}); !isCode(err, codes.InvalidArgument) {
		t.Fatalf("import of a path with '..': %v", err)
	}
	g.MustCall("flotilla.v1.ImageService/ImportImage", map[string]any{"name": name, "hostId": a.Name, "path": "uploads/" + name})
	im := waitImage(t, g, name, "held by tb-1", func(im catalogueImage) bool {
		return im.status == "IMAGE_STATUS_AVAILABLE" && slices.Equal(im.hosts, []string{a.Name})
	})
	if guest, _ := getImage(t, g, guestImage); im.sha256 != guest.sha256 {
		t.Fatalf("the imported copy's checksum %s differs from the test image's %s (same files)", im.sha256, guest.sha256)
	}

	// A symbolic link out of the image directory is refused by the agent.
	escape := "escape-" + name
	if err := os.Symlink("/etc", a.Path(filepath.Join(testenv.TestbedFlotillaDir, "images", "uploads", escape))); err != nil {
		t.Fatal(err)
	}
	g.MustCall("flotilla.v1.ImageService/ImportImage", map[string]any{"name": escape, "hostId": a.Name, "path": "uploads/" + escape})
	bad := waitImage(t, g, escape, "failed", func(im catalogueImage) bool { return im.status == "IMAGE_STATUS_FAILED" })
	if bad.fault != "INVALID_DISK" {
		t.Fatalf("import through a link out of the image directory: fault %q", bad.fault)
	}
	g.MustCall("flotilla.v1.ImageService/DeleteImage", map[string]any{"name": escape})

	// An import from the host that holds an image: tb-2 pulls it from tb-1.
	copied := "copied-" + name
	g.MustCall("flotilla.v1.ImageService/ImportImage", map[string]any{"name": copied, "hostId": a.Name, "path": "uploads/" + name})
	waitImage(t, g, copied, "held by tb-1", func(im catalogueImage) bool { return slices.Equal(im.hosts, []string{a.Name}) })
	g.MustCall("flotilla.v1.ImageService/ImportImage", map[string]any{"name": copied, "hostId": b.Name, "fromHostId": a.Name})
	if c := waitImage(t, g, copied, "held by both hosts", func(im catalogueImage) bool {
		return slices.Equal(im.hosts, []string{a.Name, b.Name})
	}); c.sha256 != im.sha256 {
		t.Fatalf("tb-2's copy has checksum %s, tb-1's %s", c.sha256, im.sha256)
	}
	g.MustCall("flotilla.v1.ImageService/DeleteImage", map[string]any{"name": copied})
	testenv.Eventually(t, time.Minute, "the copied image to leave both hosts", func() bool {
		_, err := getImage(t, g, copied)
		return isCode(err, codes.NotFound)
	})
	for _, h := range tb.Hosts {
		if _, err := os.Stat(h.Path(filepath.Join(testenv.TestbedFlotillaDir, "images", copied))); !os.IsNotExist(err) {
			t.Errorf("%s still holds the deleted image %s: %v", h.Name, copied, err)
		}
	}

	// tb-1 takes no new instances: the create goes to tb-2, which lacks the image.
	g.MustCall("flotilla.v1.HostService/CordonHost", map[string]any{"id": a.Name})
	op := g.MustCall("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": "fetched", "requestId": "create-fetched",
		"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": name}})
	opID, id := testenv.Str(op, "id"), testenv.Str(op, "instanceId")
	var done map[string]any
	testenv.Eventually(t, 5*time.Minute, "the create to end", func() bool {
		done = g.MustCall("flotilla.v1.OperationService/WaitOperation", map[string]any{"id": opID, "timeout": "30s"})
		return testenv.Str(done, "done") == "true"
	})
	if s := testenv.Str(done, "state"); s != "OPERATION_STATE_SUCCEEDED" {
		t.Fatalf("create on the host without the image: %s %s", s, testenv.Str(done, "error"))
	}
	steps, _ := done["steps"].([]any)
	if len(steps) == 0 || testenv.Str(steps[0].(map[string]any), "name") != "fetch-image" {
		t.Fatalf("the create's steps do not begin with its fetch: %v", done["steps"])
	}
	if h := testenv.Str(g.MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id}), "hostId"); h != b.Name {
		t.Fatalf("instance on %q, want %s", h, b.Name)
	}
	waitImage(t, g, name, "held by both hosts", func(im catalogueImage) bool {
		return slices.Equal(im.hosts, []string{a.Name, b.Name})
	})
	console := filepath.Join(agents[1].RunDir, id+".console.log")
	testenv.Eventually(t, 90*time.Second, "the guest on tb-2 to print FLOTILLA-GUEST-READY", func() bool {
		out, err := os.ReadFile(console)
		return err == nil && strings.Contains(string(out), "FLOTILLA-GUEST-READY")
	})

	// In use: not deleted, and the refusal says by whom.
	_, err = g.Call("flotilla.v1.ImageService/DeleteImage", map[string]any{"name": name})
	if !isCode(err, codes.FailedPrecondition) || !strings.Contains(err.Error(), id) {
		t.Fatalf("delete of an image in use: %v (want FAILED_PRECONDITION naming %s)", err, id)
	}
	if _, err := os.Stat(b.Path(filepath.Join(testenv.TestbedFlotillaDir, "images", name, ".complete"))); err != nil {
		t.Fatalf("tb-2's copy after the refused delete: %v", err)
	}

	// Once the instance is gone the image goes too, from both hosts.
	del := g.MustCall("flotilla.v1.InstanceService/DeleteInstance", map[string]any{"id": id})
	testenv.Eventually(t, 2*time.Minute, "the instance's delete to end", func() bool {
		d := g.MustCall("flotilla.v1.OperationService/WaitOperation", map[string]any{"id": testenv.Str(del, "id"), "timeout": "30s"})
		return testenv.Str(d, "done") == "true"
	})
	g.MustCall("flotilla.v1.ImageService/DeleteImage", map[string]any{"name": name})
	testenv.Eventually(t, time.Minute, "the image to leave the catalogue", func() bool {
		_, err := getImage(t, g, name)
		return isCode(err, codes.NotFound)
	})
	for _, h := range tb.Hosts {
		if _, err := os.Stat(h.Path(filepath.Join(testenv.TestbedFlotillaDir, "images", name))); !os.IsNotExist(err) {
			t.Errorf("%s still holds the deleted image: %v", h.Name, err)
		}
	}
}

func isCode(err error, c codes.Code) bool {
	ce, ok := err.(*testenv.CallError)
	return ok && ce.Code == c
}
