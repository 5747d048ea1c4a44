package main

import (
	"errors"
	"flag"
	"strconv"

	"github.com/flotilla-vm/flotilla/agent/transfer"
)

// copyFlags configure the agent-to-agent disk copy.
type copyFlags struct {
	rateLimit   int64
	compression transfer.Compression
}

func (c *copyFlags) register(fs *flag.FlagSet) {
	fs.Var(rateFlag{&c.rateLimit}, "copy-rate-limit", "bytes per second this agent sends to peers pulling disks, and, apart, pulls from them; 0 is no limit")
	fs.Var(compressionFlag{&c.compression}, "copy-compression", `disk copies: "auto" compresses chunks with zstd when that pays, "off" never`)
}

type rateFlag struct{ v *int64 }

func (f rateFlag) String() string {
	if f.v == nil {
		return "0"
	}
	return strconv.FormatInt(*f.v, 10)
}

func (f rateFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil && n < 0 {
		err = errors.New("must not be negative")
	}
	*f.v = n
	return err
}

type compressionFlag struct{ v *transfer.Compression }

func (f compressionFlag) String() string {
	if f.v == nil {
		return transfer.CompressAuto.String()
	}
	return f.v.String()
}

func (f compressionFlag) Set(s string) (err error) {
	*f.v, err = transfer.ParseCompression(s)
	return err
}
