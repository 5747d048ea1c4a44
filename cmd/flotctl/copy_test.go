package main

import (
	"testing"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func TestCopyText(t *testing.T) {
	got := copyText(&flotillav1.CopyProgress{BytesDone: 412 << 20, BytesTotal: 2 << 30, BytesPerSecond: 180 << 20})
	if want := "412 MiB / 2.0 GiB at 180 MiB/s"; got != want {
		t.Fatalf("copyText = %q, want %q", got, want)
	}
	if got := sizeText(1000); got != "1000 B" {
		t.Fatalf("sizeText(1000) = %q", got)
	}
}
