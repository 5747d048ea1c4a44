package guestchan

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", 33)
	tests := []struct {
		line string
		want message
		ok   bool
	}{
		{"HELLO flotilla-guest/1 test-5", message{verb: verbHello, arg: "test-5", proto: 1}, true},
		{"HELLO flotilla-guest/1 1.2.3_rc-1", message{verb: verbHello, arg: "1.2.3_rc-1", proto: 1}, true},
		{"HELLO flotilla-guest/2 test-6 0f6b2a7e-3c1d-4b8e-9a55-2f0c8d1e7b34", message{verb: verbHello, arg: "test-6", proto: 2, boot: "0f6b2a7e-3c1d-4b8e-9a55-2f0c8d1e7b34"}, true},
		{"HELLO flotilla-guest/2 test-6", message{}, false},
		{"HELLO flotilla-guest/2 test-6 Boot", message{}, false},
		{"HELLO flotilla-guest/2 test-6 b c", message{}, false},
		{"DONE 3", message{verb: verbDone, n: 3}, true},
		{"DONE 4 debian 12 6.1.0-28-cloud-amd64", message{verb: verbDone, n: 4, out: []string{"debian", "12", "6.1.0-28-cloud-amd64"}}, true},
		{"FAIL 5 no-such-user", message{verb: verbFail, n: 5, arg: "no-such-user"}, true},
		{"BOOT network", message{verb: verbBoot, arg: "network"}, true},
		{"BOOT " + long[:32], message{verb: verbBoot, arg: long[:32]}, true},
		{"READY", message{verb: verbReady}, true},
		{"FAILED boot-script", message{verb: verbFailed, arg: "boot-script"}, true},
		{"FAILED " + strings.Repeat("r", 64), message{verb: verbFailed, arg: strings.Repeat("r", 64)}, true},
		{"PONG 7", message{verb: verbPong, n: 7}, true},
		{"PONG 18446744073709551615", message{verb: verbPong, n: 1<<64 - 1}, true},

		{"", message{}, false},
		{"HELLO", message{}, false},
		{"HELLO flotilla-guest/3 x", message{}, false},
		{"DONE", message{}, false},
		{"DONE ", message{}, false},
		{"DONE 3 ", message{}, false},
		{"DONE x", message{}, false},
		{"DONE 3 a  b", message{}, false},
		{"DONE 3 a b c d", message{}, false},
		{"DONE 3 Debian", message{}, false},
		{"FAIL 3", message{}, false},
		{"FAIL 3 ", message{}, false},
		{"FAIL x why", message{}, false},
		{"FAIL 3 why not", message{}, false},
		{"HELLO flotilla-guest/1", message{}, false},
		{"HELLO flotilla-guest/1 Test", message{}, false},
		{"HELLO flotilla-guest/1 a b", message{}, false},
		{"BOOT", message{}, false},
		{"BOOT ", message{}, false},
		{"BOOT " + long, message{}, false},
		{"BOOT -net", message{}, false},
		{"BOOT net work", message{}, false},
		{"BOOT Network", message{}, false},
		{"BOOT net/work", message{}, false},
		{"READY now", message{}, false},
		{"READY ", message{}, false},
		{"ready", message{}, false},
		{" READY", message{}, false},
		{"FAILED", message{}, false},
		{"FAILED " + strings.Repeat("r", 65), message{}, false},
		{"FAILED why?", message{}, false},
		{"PONG", message{}, false},
		{"PONG -1", message{}, false},
		{"PONG +1", message{}, false},
		{"PONG 18446744073709551616", message{}, false},
		{"PONG 1x", message{}, false},
		{"PING 1", message{}, false},
		{"READY\r", message{}, false},
		{"BOOT n\x00et", message{}, false},
		{"BOOT net\x7f", message{}, false},
		{"BOOT n\xc3\xa9t", message{}, false},
		{"NONSENSE 1", message{}, false},
		{"READY" + strings.Repeat(" ", 300), message{}, false},
	}
	for _, tt := range tests {
		got, err := parse([]byte(tt.line))
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parse(%q) = %+v, %v; want %+v, ok=%v", tt.line, got, err, tt.want, tt.ok)
		}
	}
}

func TestLineReader(t *testing.T) {
	max := strings.Repeat("m", MaxLine-1) // with its '\n': MaxLine bytes
	over := strings.Repeat("o", MaxLine)
	huge := strings.Repeat("h", 100000)
	in := "READY\n" + max + "\n" + over + "\n" + huge + "\n" + "\xff\x00garbage\n" + "BOOT x\n" + "partial"
	type got struct {
		line    string
		tooLong bool
	}
	want := []got{{"READY", false}, {max, false}, {"", true}, {"", true}, {"\xff\x00garbage", false}, {"BOOT x", false}}
	chunks := 0
	lr := newLineReader(strings.NewReader(in), func() bool { chunks++; return true })
	for i, w := range want {
		line, tooLong, err := lr.next()
		if err != nil || string(line) != w.line || tooLong != w.tooLong {
			t.Fatalf("line %d = %.20q, %v, %v; want %.20q, %v", i, line, tooLong, err, w.line, w.tooLong)
		}
	}
	if _, _, err := lr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the lines: %v, want EOF (a partial last line is dropped)", err)
	}
	if chunks < 100000/(2*MaxLine) {
		t.Errorf("%d chunks of over-long lines counted, want every buffer-full", chunks)
	}
	if size := lr.r.Size(); size != 2*MaxLine {
		t.Errorf("buffer grew to %d", size)
	}
}

func TestLineReaderStopsEndlessLine(t *testing.T) {
	chunks := 0
	lr := newLineReader(endless{}, func() bool { chunks++; return chunks < 10 })
	if _, tooLong, err := lr.next(); !errors.Is(err, errFlood) || !tooLong {
		t.Fatalf("endless line: tooLong=%v err=%v, want errFlood", tooLong, err)
	}
}

// endless is a line that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBucket(20, 40, now)
	n := 0
	for b.take(now) {
		n++
	}
	if n != 40 {
		t.Fatalf("burst = %d, want 40", n)
	}
	now = now.Add(500 * time.Millisecond) // 10 tokens
	n = 0
	for b.take(now) {
		n++
	}
	if n != 10 {
		t.Fatalf("after 0.5 s: %d, want 10", n)
	}
	now = now.Add(time.Hour)
	n = 0
	for b.take(now) {
		n++
	}
	if n != 40 {
		t.Fatalf("after an hour: %d, want the burst, 40", n)
	}
}
