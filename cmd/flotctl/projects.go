package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// projectCommands are the subcommands of "project".
func projectCommands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		leaf(c, "create NAME", "Create a project (admin)", 1, defineProjectCreate, runProjectCreate),
		leaf(c, "list", "List the projects you see", 0, defineNone, runProjectList),
		leaf(c, "get NAME", "Show a project", 1, defineNone, runProjectGet),
		leaf(c, "update NAME", "Replace a project's quotas, prices and billing (admin)", 1, defineProjectUpdate, runProjectUpdate),
		leaf(c, "top-up NAME", "Add to a project's balance; unfreezes it once positive (admin)", 1, defineTopUp, runTopUp),
		leaf(c, "freeze NAME", "Freeze a project: pause its instances, refuse user actions (admin)", 1, defineNone, projectFreeze(true)),
		leaf(c, "unfreeze NAME", "Lift an admin's freeze and resume what it paused (admin)", 1, defineNone, projectFreeze(false)),
	}
}

// projectFlags are the settings create and update share.
type projectFlags struct {
	instances, vcpus *uint32
	memoryMiB, disk  *uint64
	billed           *bool
	prices           labelFlag
}

func defineProjectFlags(fs *pflag.FlagSet) *projectFlags {
	f := &projectFlags{prices: labelFlag{}}
	f.instances = fs.Uint32("max-instances", 0, "quota: instances (0: no bound)")
	f.vcpus = fs.Uint32("max-vcpus", 0, "quota: vCPUs (0: no bound)")
	f.memoryMiB = fs.Uint64("max-memory-mib", 0, "quota: memory in MiB (0: no bound)")
	f.disk = fs.Uint64("max-disk-gib", 0, "quota: disk in GiB (0: no bound)")
	f.billed = fs.Bool("billed", false, "charge usage against the balance; freeze when it runs out")
	fs.Var(f.prices, "price", "price of a vCPU-hour in a billing class, in thousandths of a unit, CLASS=MILLI (repeatable; e.g. hardware-and-software=1000)")
	return f
}

func (f *projectFlags) build(name string) (*flotillav1.ProjectQuota, map[string]int64, error) {
	prices := map[string]int64{}
	for class, v := range f.prices {
		var n int64
		if _, err := fmt.Sscan(v, &n); err != nil || n < 0 {
			return nil, nil, &usageError{name, fmt.Sprintf("--price %s=%s: want a non-negative integer", class, v)}
		}
		prices[class] = n
	}
	return &flotillav1.ProjectQuota{Instances: *f.instances, Vcpus: *f.vcpus, MemoryMib: *f.memoryMiB, DiskGib: *f.disk}, prices, nil
}

func defineProjectCreate(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.CreateProjectRequest, error) {
	f := defineProjectFlags(fs)
	balance := fs.Int64("balance-milli", 0, "opening balance, in thousandths of a unit")
	return func(pos []string) (*flotillav1.CreateProjectRequest, error) {
		q, prices, err := f.build(name)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CreateProjectRequest{Project: &flotillav1.Project{Name: pos[0], Quota: q, PricesMilli: prices,
			Billed: *f.billed, BalanceMilli: *balance}}, nil
	}
}

func defineProjectUpdate(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.UpdateProjectRequest, error) {
	f := defineProjectFlags(fs)
	return func(pos []string) (*flotillav1.UpdateProjectRequest, error) {
		q, prices, err := f.build(name)
		if err != nil {
			return nil, err
		}
		return &flotillav1.UpdateProjectRequest{Name: pos[0], Quota: q, PricesMilli: prices, Billed: *f.billed}, nil
	}
}

func defineTopUp(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.TopUpProjectRequest, error) {
	amount := fs.Int64("amount-milli", 0, "amount to add, in thousandths of a unit (required, > 0)")
	return func(pos []string) (*flotillav1.TopUpProjectRequest, error) {
		if *amount <= 0 {
			return nil, &usageError{name, "--amount-milli must be more than 0"}
		}
		return &flotillav1.TopUpProjectRequest{Name: pos[0], AmountMilli: *amount}, nil
	}
}

// projectCall runs one call that answers a project and prints it.
func projectCall[R any](call func(context.Context, *cli, R) (*flotillav1.Project, error)) func(context.Context, *cli, R) error {
	return func(ctx context.Context, c *cli, req R) error {
		cctx, done, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer done()
		p, err := call(cctx, c, req)
		if err != nil {
			return err
		}
		return printProjects(c.stdout, c.out, []*flotillav1.Project{p})
	}
}

var (
	runProjectCreate = projectCall(func(ctx context.Context, c *cli, r *flotillav1.CreateProjectRequest) (*flotillav1.Project, error) {
		return c.projects.CreateProject(ctx, r)
	})
	runProjectUpdate = projectCall(func(ctx context.Context, c *cli, r *flotillav1.UpdateProjectRequest) (*flotillav1.Project, error) {
		return c.projects.UpdateProject(ctx, r)
	})
	runTopUp = projectCall(func(ctx context.Context, c *cli, r *flotillav1.TopUpProjectRequest) (*flotillav1.Project, error) {
		return c.projects.TopUpProject(ctx, r)
	})
	runProjectGet = projectCall(func(ctx context.Context, c *cli, pos []string) (*flotillav1.Project, error) {
		return c.projects.GetProject(ctx, &flotillav1.GetProjectRequest{Name: pos[0]})
	})
)

func projectFreeze(freeze bool) func(context.Context, *cli, []string) error {
	return projectCall(func(ctx context.Context, c *cli, pos []string) (*flotillav1.Project, error) {
		if freeze {
			return c.projects.FreezeProject(ctx, &flotillav1.FreezeProjectRequest{Name: pos[0]})
		}
		return c.projects.UnfreezeProject(ctx, &flotillav1.UnfreezeProjectRequest{Name: pos[0]})
	})
}

func runProjectList(ctx context.Context, c *cli, _ []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.projects.ListProjects(cctx, &flotillav1.ListProjectsRequest{})
	if err != nil {
		return err
	}
	return printProjects(c.stdout, c.out.asList(), resp.GetProjects())
}

// quotaCell is "used/bound", or "used" without a bound.
func quotaCell[T uint32 | uint64](used, bound T) string {
	if bound == 0 {
		return fmt.Sprint(used)
	}
	return fmt.Sprintf("%d/%d", used, bound)
}

func printProjects(w io.Writer, f outFmt, ps []*flotillav1.Project) error {
	if f.document() {
		return writeDoc(w, f, ps)
	}
	rows := make([][]string, 0, len(ps))
	for _, p := range ps {
		q, u := p.GetQuota(), p.GetUsage()
		state := "active"
		switch {
		case p.GetFrozenByAdmin():
			state = "frozen (admin)"
		case p.GetFrozen():
			state = "frozen (balance)"
		}
		balance := "-"
		if p.GetBilled() {
			balance = fmt.Sprintf("%.3f", float64(p.GetBalanceMilli())/1000)
		}
		var prices []string
		for class, v := range p.GetPricesMilli() {
			prices = append(prices, fmt.Sprintf("%s=%d", class, v))
		}
		sort.Strings(prices)
		rows = append(rows, []string{escape(p.GetName()), state, balance,
			quotaCell(u.GetInstances(), q.GetInstances()), quotaCell(u.GetVcpus(), q.GetVcpus()),
			quotaCell(u.GetMemoryMib(), q.GetMemoryMib()), quotaCell(u.GetDiskGib(), q.GetDiskGib()),
			escape(strings.Join(prices, ","))})
	}
	return writeTable(w, []string{"NAME", "STATE", "BALANCE", "INSTANCES", "VCPUS", "MEMORY_MIB", "DISK_GIB", "PRICES"}, rows)
}
