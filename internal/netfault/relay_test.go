package netfault

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo serves lines back until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

func TestRelayHoldsTrafficWhileCut(t *testing.T) {
	r, err := Listen(echo(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	roundTrip := func(msg string, within time.Duration) (string, error) {
		if _, err := c.Write([]byte(msg + "\n")); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(within))
		return rd.ReadString('\n')
	}
	if got, err := roundTrip("one", 5*time.Second); err != nil || got != "one\n" {
		t.Fatalf("before the cut: %q %v", got, err)
	}
	r.Cut()
	// A bound on the negative answer: nothing crosses while cut.
	if got, err := roundTrip("two", 300*time.Millisecond); err == nil {
		t.Fatalf("while cut, %q came back", got)
	}
	r.Heal()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := rd.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after healing, the held line: %q %v", got, err)
	}
	// A connection made while cut is held, then served.
	r.Cut()
	c2, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write([]byte("three\n")); err != nil {
		t.Fatal(err)
	}
	r.Heal()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := bufio.NewReader(c2).ReadString('\n'); err != nil || got != "three\n" {
		t.Fatalf("a connection made while cut: %q %v", got, err)
	}
}
