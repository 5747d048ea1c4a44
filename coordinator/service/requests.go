package service

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// A request id is scoped to its caller (the certificate's name; in
// plaintext every caller is the same, unnamed one) and to the kind of
// request (create, or the action), and bound to the request's content by a
// fingerprint: a retry with the same id and content returns the first
// operation, one with the same id and other content is refused
// (INVALID_ARGUMENT naming the first operation), and another caller's or
// another kind of request's use of the same id is another request. From
// log version 6 (before, the id alone is the key, as it was).

// requestScope returns the key and fingerprint of a request by c
// (content is the request without its request id), or empty strings when
// the cluster cannot record them yet or the request has no id. The caller
// is the one the operation records: read once per request (caller.Of
// decodes a relayed write's header and formats the peer's address).
func (s *Service) requestScope(c *state.Caller, requestID, kind string, content any) (key, hash string) {
	if requestID == "" || s.store.LogVersion() < fsm.LogVersion6 {
		return "", ""
	}
	name := ""
	if c.Authenticated {
		name = c.Name
	}
	b, err := json.Marshal(content) // maps marshal in key order: the same content, the same bytes
	if err != nil {
		b = []byte(fmt.Sprintf("%#v", content))
	}
	sum := sha256.Sum256(b)
	return strconv.Quote(name) + "/" + kind + "/" + strconv.Quote(requestID), hex.EncodeToString(sum[:16])
}

// priorRequest returns the operation a request already produced, if any,
// or an error if it was produced by other content.
func (s *Service) priorRequest(requestID, key, hash string) (state.Operation, bool, error) {
	if requestID == "" {
		return state.Operation{}, false, nil
	}
	if key == "" {
		key = requestID
	}
	op, ok := s.store.OperationByRequest(key)
	if !ok {
		return op, false, nil
	}
	if hash != "" && op.RequestHash != "" && op.RequestHash != hash {
		return state.Operation{}, false, fmt.Errorf("request_id %q was used for operation %s with other content: %w", requestID, op.ID, fsm.ErrInvalid)
	}
	return op, true, nil
}
