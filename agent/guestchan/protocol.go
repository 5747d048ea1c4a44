package guestchan

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"time"
)

// Protocols v1 and v2 (docs/guest-channel.md): lines of printable ASCII
// ending in '\n', at most MaxLine bytes with it.
const (
	MaxLine = 256
	// Hello is the protocol a v1 guest side names in its HELLO; HelloV2
	// a guest side that also takes the host's commands (CMD).
	Hello   = "flotilla-guest/1"
	HelloV2 = "flotilla-guest/2"
	// MaxReplyFields is how many tokens a DONE may carry.
	MaxReplyFields = 3
)

var (
	tokenPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
	reasonPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// verb is what one valid guest line says.
type verb int

const (
	verbHello verb = iota + 1
	verbBoot
	verbReady
	verbFailed
	verbPong
	verbDone
	verbFail
)

// message is one valid guest line.
type message struct {
	verb  verb
	arg   string   // version, stage or reason; "" for READY, PONG and DONE
	n     uint64   // PONG's or a reply's number
	proto int      // HELLO's protocol: 1 or 2
	boot  string   // a v2 HELLO's boot id
	out   []string // DONE's tokens
}

// errMalformed is any line that is not one of the verbs, exactly.
var errMalformed = errors.New("malformed line")

// parse validates one line, without its '\n'. Nothing of a line that fails
// goes anywhere but the drop count.
func parse(line []byte) (message, error) {
	if len(line) >= MaxLine {
		return message{}, errMalformed
	}
	for _, b := range line {
		if b < 0x20 || b > 0x7e {
			return message{}, errMalformed
		}
	}
	word, rest, _ := bytes.Cut(line, []byte{' '})
	switch string(word) {
	case "HELLO":
		proto, version, ok := bytes.Cut(rest, []byte{' '})
		if !ok {
			break
		}
		switch string(proto) {
		case Hello:
			if tokenPattern.Match(version) {
				return message{verb: verbHello, arg: string(version), proto: 1}, nil
			}
		case HelloV2:
			// v2 names the boot too, so that a HELLO said again (after
			// PING 1) is told from a new boot.
			version, boot, ok := bytes.Cut(version, []byte{' '})
			if ok && tokenPattern.Match(version) && reasonPattern.Match(boot) {
				return message{verb: verbHello, arg: string(version), proto: 2, boot: string(boot)}, nil
			}
		}
	case "BOOT":
		if tokenPattern.Match(rest) {
			return message{verb: verbBoot, arg: string(rest)}, nil
		}
	case "READY":
		if len(line) == len("READY") {
			return message{verb: verbReady}, nil
		}
	case "FAILED":
		if reasonPattern.Match(rest) {
			return message{verb: verbFailed, arg: string(rest)}, nil
		}
	case "PONG":
		if n, ok := number(rest); ok {
			return message{verb: verbPong, n: n}, nil
		}
	case "DONE":
		num, toks, _ := bytes.Cut(rest, []byte{' '})
		n, ok := number(num)
		if !ok {
			break
		}
		var out []string
		if len(toks) > 0 {
			for t := range bytes.SplitSeq(toks, []byte{' '}) {
				if !tokenPattern.Match(t) || len(out) == MaxReplyFields {
					return message{}, errMalformed
				}
				out = append(out, string(t))
			}
		} else if len(num) != len(rest) {
			break // "DONE n " with a trailing space
		}
		return message{verb: verbDone, n: n, out: out}, nil
	case "FAIL":
		num, reason, _ := bytes.Cut(rest, []byte{' '})
		if n, ok := number(num); ok && reasonPattern.Match(reason) {
			return message{verb: verbFail, n: n, arg: string(reason)}, nil
		}
	}
	return message{}, errMalformed
}

// number parses a decimal of at most 20 digits (an unsigned 64-bit value).
func number(b []byte) (uint64, bool) {
	// Digits only: ParseUint alone would take a sign.
	if len(b) == 0 || len(b) > 20 || len(bytes.Trim(b, "0123456789")) != 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}

// lineReader reads lines with a fixed buffer: an over-long line is read
// to its end in chunks and discarded, never held.
type lineReader struct {
	r *bufio.Reader
	// chunk is called for every buffer-full of an over-long line, so that
	// a guest sending one endless line is rate limited too; false stops
	// the read (errFlood).
	chunk func() bool
}

func newLineReader(r io.Reader, chunk func() bool) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 2*MaxLine), chunk: chunk}
}

// errFlood ends a read that the rate limit cut short.
var errFlood = errors.New("guest floods its channel")

// next returns the next line without its '\n', or tooLong for one over
// MaxLine (its bytes discarded). The returned slice is valid until the
// next call.
func (l *lineReader) next() (line []byte, tooLong bool, err error) {
	b, err := l.r.ReadSlice('\n')
	if err == nil {
		if len(b) > MaxLine {
			return nil, true, nil
		}
		return b[:len(b)-1], false, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, false, err // a partial last line is dropped with the connection
	}
	for errors.Is(err, bufio.ErrBufferFull) {
		if !l.chunk() {
			return nil, true, errFlood
		}
		_, err = l.r.ReadSlice('\n')
	}
	if err != nil {
		return nil, true, err
	}
	return nil, true, nil
}

// bucket is a token bucket: rate lines a second, up to burst at once.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// take spends a token if there is one.
func (b *bucket) take(now time.Time) bool {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
