package forward

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	encproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// A relayed write's reply reaches the follower encoded; decoding it only
// for the server to encode the same message again for the client was most
// of what a follower spent on a reply. With ServerCodec installed, the
// follower hands the leader's bytes to its client as they are.

// rawReply is a reply already encoded by the leader.
type rawReply []byte

// passthrough is the proto codec, except that it writes a rawReply as is.
type passthrough struct{ encoding.CodecV2 }

func (c passthrough) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawReply); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// ServerCodec is the server option that lets relayed replies pass through
// undecoded: the proto codec, which also writes those bytes as they are.
// Without it, a follower decodes each reply into its message.
func (f *Forwarder) ServerCodec() grpc.ServerOption {
	f.passReplies.Store(true)
	return grpc.ForceServerCodecV2(passthrough{encoding.GetCodecV2(encproto.Name)})
}

// Encoded wraps a message already encoded (e.g. one watch message shared
// by many watchers) so that the server, with ServerCodec installed,
// writes it as is. The bytes are not copied: never change them.
func (f *Forwarder) Encoded(b []byte) any { return rawReply(b) }
