package clitest

import (
	"strings"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// The commands of images, projects and the lifecycle's later actions
// (rescue, rebuild, upgrade, bundle, deallocate, soft delete and restore),
// on an instance of their own, each as a user runs it: --wait and the
// outcome read back.
func testMoreLifecycle(c *cluster, _ string) {
	t := c.t
	id := strings.TrimSpace(c.ok("create", "--name", "more", "--image", "flotilla-test", "--wait", "-o", "jsonpath={.instance.id}").stdout)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"rescue", id}, "RESCUE SUCCEEDED STATUS_RESCUED"},
		{[]string{"unrescue", id}, "UNRESCUE SUCCEEDED STATUS_RUNNING"},
		{[]string{"rebuild", id}, "REBUILD SUCCEEDED STATUS_RUNNING"},
		{[]string{"upgrade", id, "--memory-mib", "512"}, "UPGRADE SUCCEEDED STATUS_RUNNING"},
		{[]string{"stop", id}, "STOP SUCCEEDED STATUS_STOPPED"},
		{[]string{"bundle", id, "--image", "more-image"}, "BUNDLE SUCCEEDED STATUS_STOPPED"},
		{[]string{"deallocate", id}, "DEALLOCATE SUCCEEDED STATUS_DEALLOCATED"},
		{[]string{"start", id}, "START SUCCEEDED STATUS_RUNNING"},
		{[]string{"delete", id}, "SOFT_DELETE SUCCEEDED STATUS_SOFT_DELETED"},
		{[]string{"restore", id}, "RESTORE SUCCEEDED STATUS_RUNNING"},
	}
	for _, s := range steps {
		r := c.ok(append(s.args, "--wait", "-o", "jsonpath={.operation.kind} {.operation.state} {.instance.status}")...)
		got := strings.NewReplacer("OPERATION_KIND_", "", "OPERATION_STATE_", "").Replace(strings.TrimSpace(r.stdout))
		if got != s.want {
			t.Errorf("%s: got %q, want %q", s.args, got, s.want)
		}
	}
	if r := c.ok("get", id, "-o", "jsonpath={.spec.memoryMib}"); r.stdout != "512\n" {
		t.Errorf("memory after the upgrade: %q", r.stdout)
	}

	// The bundle is in the catalogue, held by the host, and usable at once.
	if r := c.ok("image", "get", "more-image", "-o", "jsonpath={.name} {.hosts[0]}"); r.stdout != "more-image fake-1\n" {
		t.Errorf("image get: %q", r.stdout)
	}
	if r := c.ok("image", "list", "-o", "json"); !strings.Contains(r.stdout, `"more-image"`) {
		t.Errorf("image list has no more-image: %s", r.stdout)
	}
	c.fails(4, "without '..'", "image", "delete", "no-such/../image")
	c.fails(2, "--host", "image", "import", "other-image", "--path", "x.qcow2")
	c.ok("delete", id, "--force", "--wait")
	c.ok("image", "delete", "more-image")
	testenv.Eventually(t, 30*time.Second, "more-image to leave the catalogue", func() bool {
		return c.run("image", "get", "more-image").code == 3
	})

	// Projects: create, top up, freeze and unfreeze, read back.
	c.ok("project", "create", "blue", "--max-instances", "3", "--balance-milli", "1000")
	c.ok("project", "top-up", "blue", "--amount-milli", "500")
	c.ok("project", "freeze", "blue")
	if r := c.ok("project", "get", "blue", "-o", "jsonpath={.frozen} {.balanceMilli}"); r.stdout != "true 1500\n" {
		t.Errorf("project after a top-up and a freeze: %q", r.stdout)
	}
	c.ok("project", "unfreeze", "blue")
	if r := c.ok("project", "get", "blue", "-o", "jsonpath={.frozen}"); r.stdout == "true\n" {
		t.Errorf("project still frozen after unfreeze")
	}

	// A host that holds instances is not removed; the refusal says why.
	c.fails(4, "FailedPrecondition", "host", "remove", "fake-1")
}
