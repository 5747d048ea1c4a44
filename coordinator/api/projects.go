package api

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type projects struct {
	*core
	pb.UnimplementedProjectServiceServer
}

func validateProjectName(v *violations, field, name string) {
	if !namePat.MatchString(name) {
		v.add(field, "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit")
	}
}

func quotaFromPB(q *pb.ProjectQuota) state.Quota {
	return state.Quota{Instances: q.GetInstances(), VCPUs: q.GetVcpus(), MemoryMiB: q.GetMemoryMib(), DiskGiB: q.GetDiskGib()}
}

func validatePrices(v *violations, field string, m map[string]int64) {
	for class, price := range m {
		if price < 0 {
			v.add(field, "price of %q must not be negative", class)
		}
	}
}

func (s *projects) projectToPB(p *state.Project) *pb.Project {
	return convert.ProjectToPB(p, s.store.ProjectUse(p.Name))
}

func (s *projects) CreateProject(ctx context.Context, r *pb.CreateProjectRequest) (*pb.Project, error) {
	var v violations
	p := r.GetProject()
	validateProjectName(&v, "project.name", p.GetName())
	validatePrices(&v, "project.prices_milli", p.GetPricesMilli())
	if p.GetBalanceMilli() < 0 {
		v.add("project.balance_milli", "must not be negative")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	got, err := s.svc.PutProject(ctx, state.Project{Name: p.Name, Quota: quotaFromPB(p.Quota), Billed: p.Billed,
		BalanceMilli: p.BalanceMilli, PricesMilli: p.PricesMilli}, true)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.projectToPB(&got), nil
}

func (s *projects) GetProject(ctx context.Context, r *pb.GetProjectRequest) (*pb.Project, error) {
	var v violations
	validateProjectName(&v, "name", r.Name)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	p, err := s.store.Project(r.Name)
	if err == nil && !sees(ctx, r.Name) {
		err = fmt.Errorf("project %q: %w", r.Name, state.ErrNotFound)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return s.projectToPB(&p), nil
}

func (s *projects) ListProjects(ctx context.Context, _ *pb.ListProjectsRequest) (*pb.ListProjectsResponse, error) {
	all, _ := s.store.Projects()
	out := &pb.ListProjectsResponse{}
	for k := range all {
		if sees(ctx, all[k].Name) {
			out.Projects = append(out.Projects, s.projectToPB(&all[k]))
		}
	}
	return out, nil
}

func (s *projects) UpdateProject(ctx context.Context, r *pb.UpdateProjectRequest) (*pb.Project, error) {
	var v violations
	validateProjectName(&v, "name", r.Name)
	validatePrices(&v, "prices_milli", r.PricesMilli)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	got, err := s.svc.PutProject(ctx, state.Project{Name: r.Name, Quota: quotaFromPB(r.Quota), Billed: r.Billed, PricesMilli: r.PricesMilli}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.projectToPB(&got), nil
}

func (s *projects) TopUpProject(ctx context.Context, r *pb.TopUpProjectRequest) (*pb.Project, error) {
	var v violations
	validateProjectName(&v, "name", r.Name)
	if r.AmountMilli <= 0 {
		v.add("amount_milli", "must be more than 0")
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	got, err := s.svc.TopUp(ctx, r.Name, r.AmountMilli)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.projectToPB(&got), nil
}

func (s *projects) FreezeProject(ctx context.Context, r *pb.FreezeProjectRequest) (*pb.Project, error) {
	return s.freeze(ctx, r.Name, true)
}

func (s *projects) UnfreezeProject(ctx context.Context, r *pb.UnfreezeProjectRequest) (*pb.Project, error) {
	return s.freeze(ctx, r.Name, false)
}

func (s *projects) freeze(ctx context.Context, name string, freeze bool) (*pb.Project, error) {
	var v violations
	validateProjectName(&v, "name", name)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	got, err := s.svc.Freeze(ctx, name, freeze)
	if err != nil {
		return nil, toStatus(err)
	}
	return s.projectToPB(&got), nil
}
