package transfer

import (
	"context"
	"sync"
	"time"
)

// limiter is a token bucket over bytes: wait(n) returns once n bytes fit
// in the rate. A nil limiter, or one of rate 0, never waits. Waits are
// reservations (the bucket may go negative), so concurrent copies share
// the rate fairly and in order.
type limiter struct {
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// newLimiter returns a limiter of bytesPerSecond, nil for 0 (unlimited).
// The burst is a tenth of a second's worth, at least one chunk.
func newLimiter(bytesPerSecond int64) *limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := max(float64(bytesPerSecond)/10, ChunkSize)
	return &limiter{rate: float64(bytesPerSecond), burst: burst, tokens: burst, last: time.Now()}
}

func (l *limiter) wait(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	var d time.Duration
	if l.tokens < 0 {
		d = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
