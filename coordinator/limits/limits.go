// Package limits bounds what one caller may hold of a coordinator: calls
// per second (a token bucket), unary calls in flight and open streams, per
// caller identity (its certificate's name under mutual TLS, its IP address
// in plaintext). A call over a limit is refused with RESOURCE_EXHAUSTED and
// a RetryInfo detail saying when to try again.
package limits

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/internal/authz"
)

// Config sets the limits per caller; a zero field is no limit.
type Config struct {
	Rate     float64 // calls (unary or stream openings) per second, sustained
	Burst    int     // calls allowed at once above Rate (at least 1 when Rate is set)
	InFlight int     // unary calls running at once
	Streams  int     // streams open at once
	Now      func() time.Time
}

// Defaults are generous: they stop one caller from flooding a coordinator,
// not a busy program (the benchmarks and tests, all one plaintext caller on
// loopback, stay well under them).
var Defaults = Config{Rate: 20000, Burst: 40000, InFlight: 2048, Streams: 4096}

// maxCallers bounds the callers tracked; past it, idle ones are forgotten.
const maxCallers = 1 << 16

// Limiter holds the per-caller counters.
type Limiter struct {
	cfg     Config
	mu      sync.Mutex
	callers map[string]*counters
}

type counters struct {
	tokens   float64
	at       time.Time
	inFlight int
	streams  int
}

// New returns a limiter.
func New(cfg Config) *Limiter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rate > 0 && cfg.Burst < 1 {
		cfg.Burst = 1
	}
	return &Limiter{cfg: cfg, callers: map[string]*counters{}}
}

// Key is the identity a call is counted under.
func Key(ctx context.Context) string {
	if p, ok := authz.FromContext(ctx); ok && p.Verified {
		return "cert:" + p.Name
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return "addr:" + host
		}
		return "addr:" + p.Addr.String()
	}
	return "unknown"
}

// admit takes a token and, for a unary call or a stream, a slot; it
// returns the release function or a RESOURCE_EXHAUSTED error.
func (l *Limiter) admit(key string, stream bool) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	c := l.callers[key]
	if c == nil {
		if len(l.callers) >= maxCallers {
			l.sweepLocked(now)
		}
		c = &counters{tokens: float64(l.cfg.Burst), at: now}
		l.callers[key] = c
	}
	if l.cfg.Rate > 0 {
		c.tokens = min(float64(l.cfg.Burst), c.tokens+now.Sub(c.at).Seconds()*l.cfg.Rate)
		c.at = now
		if c.tokens < 1 {
			wait := time.Duration((1 - c.tokens) / l.cfg.Rate * float64(time.Second))
			return nil, exhausted(fmt.Sprintf("rate limit: %s may make %g calls per second", key, l.cfg.Rate), wait)
		}
	}
	slot, limit, what := &c.inFlight, l.cfg.InFlight, "unary calls in flight"
	if stream {
		slot, limit, what = &c.streams, l.cfg.Streams, "open streams"
	}
	if limit > 0 && *slot >= limit {
		return nil, exhausted(fmt.Sprintf("%s already has %d %s (the limit)", key, *slot, what), time.Second)
	}
	if l.cfg.Rate > 0 {
		c.tokens--
	}
	*slot++
	return func() {
		l.mu.Lock()
		*slot--
		l.mu.Unlock()
	}, nil
}

// sweepLocked forgets callers with nothing open and a full bucket.
func (l *Limiter) sweepLocked(now time.Time) {
	for k, c := range l.callers {
		full := l.cfg.Rate <= 0 || c.tokens+now.Sub(c.at).Seconds()*l.cfg.Rate >= float64(l.cfg.Burst)
		if c.inFlight == 0 && c.streams == 0 && full {
			delete(l.callers, k)
		}
	}
}

func exhausted(msg string, retry time.Duration) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("%s; retry in %s", msg, retry.Round(time.Millisecond)))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
		st = d
	}
	return st.Err()
}

// Unary limits unary calls; it runs after authorization (which names the caller).
func (l *Limiter) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		release, err := l.admit(Key(ctx), false)
		if err != nil {
			return nil, err
		}
		defer release()
		return h(ctx, req)
	}
}

// Stream limits streams; it runs after authorization.
func (l *Limiter) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		release, err := l.admit(Key(ss.Context()), true)
		if err != nil {
			return err
		}
		defer release()
		return h(srv, ss)
	}
}
