// Package freeport picks loopback ports for processes that tests and
// benchmarks start. Ports come from below the kernel's ephemeral range
// (32768 and up), so an outgoing connection elsewhere cannot take one as its
// source port before the process binds it, and none is handed out twice in
// one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Addr returns "127.0.0.1:port" for a port that was free a moment ago.
func Addr() (string, error) { return AddrOn("127.0.0.1") }

// AddrOn returns "ip:port" for a port of ip, an address of this machine,
// that was free a moment ago.
func AddrOn(ip string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	for tries := 0; tries < 1000; tries++ {
		port := 20000 + rand.IntN(12000)
		if used[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
		if err != nil {
			continue
		}
		l.Close()
		used[port] = true
		return l.Addr().String(), nil
	}
	return "", fmt.Errorf("freeport: no free port of %s in 20000-31999", ip)
}
