package scheduler

// Choose is the placement of a fleet too large to rank whole: it ranks a
// sample of the hosts (the caller draws it) as Place ranks all of them and
// picks at random, through pick, among the hosts within Near of the best,
// so that decisions made at once from one view do not all land on the same
// host. It never preempts: ok is false when no sampled host fits, and the
// caller then falls back to Place over every host.
//
// pick(n) returns an integer in [0, n); the randomness is the caller's, so
// Choose stays a function of its arguments.
func Choose(r Request, sample []Host, p Policy, pick func(n int) int) (hostID string, ok bool) {
	req := widen(r.Resources)
	scores := make([]score, 0, len(sample))
	best := -1
	for i := range sample {
		h := &sample[i]
		if v, _ := judge(h, &r, &p); v != accepted {
			continue
		}
		scores = append(scores, scoreOf(h, req, &p))
		if best < 0 || scores[len(scores)-1].better(&scores[best], p.Pack) {
			best = len(scores) - 1
		}
	}
	if best < 0 {
		return "", false
	}
	near := scores[:0:0]
	for i := range scores {
		if scores[i].near(&scores[best], p.Pack) {
			near = append(near, scores[i])
		}
	}
	return near[pick(len(near))].id, true
}

// Near is how close to the best a host's rank must be for Choose to pick
// it: for spread, a memory share at most this much higher (1 percentage
// point); for pack, exactly as much free memory (packing gives up nothing).
const Near = 0.01

// near reports whether s is within Near of best.
func (s *score) near(best *score, pack bool) bool {
	if pack {
		return s.freeMem == best.freeMem
	}
	// s.mem <= best.mem + Near, in floats: a tolerance needs no exactness.
	return float64(s.memNum)/float64(s.memDen) <= float64(best.memNum)/float64(best.memDen)+Near
}
