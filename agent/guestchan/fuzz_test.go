package guestchan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// format writes m as its canonical line (what parse reads back as m).
func format(m message) string {
	switch m.verb {
	case verbHello:
		if m.proto == 2 {
			return fmt.Sprintf("HELLO %s %s %s", HelloV2, m.arg, m.boot)
		}
		return fmt.Sprintf("HELLO %s %s", Hello, m.arg)
	case verbBoot:
		return "BOOT " + m.arg
	case verbReady:
		return "READY"
	case verbFailed:
		return "FAILED " + m.arg
	case verbPong:
		return fmt.Sprintf("PONG %d", m.n)
	case verbDone:
		return strings.Join(append([]string{"DONE", fmt.Sprint(m.n)}, m.out...), " ")
	case verbFail:
		return fmt.Sprintf("FAIL %d %s", m.n, m.arg)
	}
	return ""
}

// FuzzParse: parse takes a line only if it is short, printable and
// exactly one of the verbs, with tokens that stay tokens; what it takes
// written back canonically reads the same.
func FuzzParse(f *testing.F) {
	for _, l := range []string{
		"HELLO flotilla-guest/1 test-5", "HELLO flotilla-guest/2 test-6 0f6b2a7e-3c1d-4b8e-9a55-2f0c8d1e7b34",
		"DONE 3", "DONE 4 debian 12 6.1.0-28-cloud-amd64", "FAIL 5 no-such-user", "BOOT network", "READY",
		"FAILED boot-script", "PONG 18446744073709551615", "PONG 007", "DONE 1 a b c d", "HELLO flotilla-guest/2 x B",
		"", "\xff\x00garbage", strings.Repeat("a", MaxLine),
	} {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := parse(line)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("parse(%q): %v", line, err)
			}
			return
		}
		if len(line) >= MaxLine {
			t.Fatalf("parse took a line of %d bytes", len(line))
		}
		for _, b := range line {
			if b < 0x20 || b > 0x7e {
				t.Fatalf("parse took %q, with a byte 0x%02x", line, b)
			}
		}
		for _, tok := range append([]string{m.arg, m.boot}, m.out...) {
			if strings.ContainsAny(tok, " \t\n") {
				t.Fatalf("parse(%q) made a token %q with a space", line, tok)
			}
		}
		if len(m.out) > MaxReplyFields {
			t.Fatalf("parse(%q) kept %d reply fields", line, len(m.out))
		}
		again, err := parse([]byte(format(m)))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("parse(%q) = %+v; written back %q it reads %+v, %v", line, m, format(m), again, err)
		}
	})
}

// FuzzLineReader: whatever a guest writes, in whatever pieces, the reader
// returns lines under MaxLine without their '\n', never grows its buffer,
// and ends (at the input's end, or when the flood limit says so).
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("READY\n"+strings.Repeat("m", MaxLine-1)+"\n"+strings.Repeat("o", MaxLine)+"\n\xff\x00garbage\nBOOT x\npartial"), uint8(0), uint8(3))
	f.Add([]byte(strings.Repeat("h", 5000)+"\nREADY\n"), uint8(1), uint8(2))
	f.Add([]byte("\n\n\n"), uint8(2), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, pieces, chunkLimit uint8) {
		var r io.Reader = bytes.NewReader(data)
		switch pieces % 3 {
		case 1:
			r = iotest.OneByteReader(r)
		case 2:
			r = iotest.HalfReader(r)
		}
		chunks := 0
		lr := newLineReader(r, func() bool { chunks++; return chunks <= int(chunkLimit) })
		for n := 0; ; n++ {
			if n > len(data)+1 {
				t.Fatalf("more lines than bytes from %d bytes", len(data))
			}
			line, tooLong, err := lr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, errFlood) {
					t.Fatalf("next: %v", err)
				}
				break
			}
			if tooLong && line != nil {
				t.Fatalf("an over-long line came back with %d bytes", len(line))
			}
			if len(line) >= MaxLine || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line %q", line)
			}
			if !tooLong {
				_, _ = parse(line)
			}
		}
		if size := lr.r.Size(); size != 2*MaxLine {
			t.Fatalf("buffer grew to %d", size)
		}
	})
}
