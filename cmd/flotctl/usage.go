package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// usageVocabularies are the vocabularies that name billing classes.
var usageVocabularies = []flotillav1.Vocabulary{flotillav1.Vocabulary_VOCABULARY_RIGHTSCALE, flotillav1.Vocabulary_VOCABULARY_AZURE}

// parseUsage builds the GetInstanceUsage requests of a usage command line:
// one per vocabulary asked for (both when none is).
func parseUsage(name string, args []string) ([]*flotillav1.GetInstanceUsageRequest, error) {
	return parseWith(name, args, 1, defineUsage)
}

func defineUsage(fs *pflag.FlagSet, usage string) func([]string) ([]*flotillav1.GetInstanceUsageRequest, error) {
	voc := fs.String("vocabulary", "", "rightscale or azure (default: both)")
	from := fs.String("from", "", "start of the range, RFC 3339 or YYYY-MM-DD (UTC) (default: when metering began)")
	to := fs.String("to", "", "end of the range, RFC 3339 or YYYY-MM-DD (UTC) (default: now)")
	return func(pos []string) ([]*flotillav1.GetInstanceUsageRequest, error) {
		return buildUsage(usage, pos, *voc, *from, *to)
	}
}

func buildUsage(usage string, pos []string, voc, from, to string) ([]*flotillav1.GetInstanceUsageRequest, error) {
	base := &flotillav1.GetInstanceUsageRequest{InstanceId: pos[0]}
	for _, f := range []struct {
		flag, value string
		dst         **timestamppb.Timestamp
	}{{"--from", from, &base.StartTime}, {"--to", to, &base.EndTime}} {
		if f.value == "" {
			continue
		}
		t, err := parseTime(f.value)
		if err != nil {
			return nil, &usageError{usage, fmt.Sprintf("%s: %v", f.flag, err)}
		}
		*f.dst = timestamppb.New(t)
	}
	if base.StartTime != nil && base.EndTime != nil && !base.EndTime.AsTime().After(base.StartTime.AsTime()) {
		return nil, &usageError{usage, "--to must be after --from"}
	}
	var out []*flotillav1.GetInstanceUsageRequest
	for _, u := range usageVocabularies {
		if voc == "" || strings.EqualFold(voc, flagWord(u)) {
			r := proto.CloneOf(base)
			r.Vocabulary = u
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, &usageError{usage, fmt.Sprintf("--vocabulary must be rightscale or azure, not %q", voc)}
	}
	return out, nil
}

// parseTime reads an RFC 3339 time or a UTC date.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2026-12-01T15:04:05Z) or a date (2026-12-01), got %q", s)
}

func runUsage(ctx context.Context, c *cli, reqs []*flotillav1.GetInstanceUsageRequest) error {
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	var all []*flotillav1.InstanceUsage
	for _, r := range reqs {
		if len(all) > 0 {
			r.MinRevision = all[0].GetRevision() // the same state or later, if another server answers
		}
		cctx, cancel := c.call(ctx)
		u, err := c.usage.GetInstanceUsage(cctx, r)
		cancel()
		if err != nil {
			return err
		}
		all = append(all, u)
	}
	return printUsage(c.stdout, c.out.asList(), all)
}
