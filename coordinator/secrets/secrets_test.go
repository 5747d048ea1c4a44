package secrets

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestPasswordNeverPrinted(t *testing.T) {
	p := NewPassword("root", "hunter2-s3cret")
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "pw", p)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "pw", p)
	outs := []string{fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s %q %x", p, p, p, p, p, p),
		fmt.Sprintf("%v", []Password{p}), fmt.Sprintf("%+v", struct{ P Password }{p}), logged.String()}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") || strings.Contains(o, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("password printed: %s", o)
		}
		if !strings.Contains(o, redacted) {
			t.Errorf("no redacted mark in %q", o)
		}
	}
	if p.Reveal() != "hunter2-s3cret" {
		t.Fatal("Reveal")
	}
}

func TestStoreExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(func() time.Time { return now })
	s.Put("op-1", NewPassword("root", "a"), now.Add(time.Minute))
	s.Put("op-2", NewPassword("root", "b"), now.Add(2*time.Minute))
	if p, ok := s.Get("op-1"); !ok || p.Reveal() != "a" {
		t.Fatalf("op-1: %v %v", p, ok)
	}
	now = now.Add(90 * time.Second)
	if _, ok := s.Get("op-1"); ok {
		t.Error("op-1 held past its deadline")
	}
	if s.Len() != 1 {
		t.Errorf("Len %d", s.Len())
	}
	s.Drop("op-2")
	if _, ok := s.Get("op-2"); ok || s.Len() != 0 {
		t.Error("op-2 held after Drop")
	}
}
