package main

import (
	"fmt"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// copyText shows a running disk copy as "412 MiB / 2.0 GiB at 180 MiB/s".
func copyText(c *flotillav1.CopyProgress) string {
	return fmt.Sprintf("%s / %s at %s/s", sizeText(c.GetBytesDone()), sizeText(c.GetBytesTotal()), sizeText(c.GetBytesPerSecond()))
}

// sizeText is a byte count in binary units ("412 MiB", "2.0 GiB", "38 KiB").
func sizeText(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	unit := ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= 1024
		unit = u
		if v < 1024 {
			break
		}
	}
	if v >= 10 {
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}
