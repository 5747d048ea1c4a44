package libvirt

import (
	"context"
	"errors"
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("libvirt driver closed")

// wrapErr classifies an error from go-libvirt into the hypervisor sentinels,
// keeping the original error in the chain for logs.
func wrapErr(op, id string, err error) error {
	if err == nil {
		return nil
	}
	what := op
	if id != "" {
		what = op + " " + id
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, ErrClosed), isClassified(err):
		return fmt.Errorf("libvirt: %s: %w", what, err)
	case isTransportErr(err):
		return fmt.Errorf("libvirt: %s: %w: %w", what, hypervisor.ErrUnavailable, err)
	}
	if sentinel := sentinelFor(err); sentinel != nil {
		return fmt.Errorf("libvirt: %s: %w: %w", what, sentinel, err)
	}
	return fmt.Errorf("libvirt: %s: %w", what, err)
}

// isClassified reports whether err already wraps a hypervisor sentinel.
func isClassified(err error) bool {
	for _, s := range []error{hypervisor.ErrNotFound, hypervisor.ErrAlreadyExists, hypervisor.ErrInvalidSpec,
		hypervisor.ErrInvalidState, hypervisor.ErrImageNotFound, hypervisor.ErrUnavailable} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// sentinelFor returns the hypervisor sentinel matching a libvirt error, or nil.
func sentinelFor(err error) error {
	var lerr golibvirt.Error
	if !errors.As(err, &lerr) {
		return nil
	}
	switch golibvirt.ErrorNumber(lerr.Code) {
	case golibvirt.ErrNoDomain:
		return hypervisor.ErrNotFound
	case golibvirt.ErrDomExist:
		return hypervisor.ErrAlreadyExists
	case golibvirt.ErrOperationInvalid:
		return hypervisor.ErrInvalidState
	case golibvirt.ErrXMLError, golibvirt.ErrXMLDetail, golibvirt.ErrXMLInvalidSchema,
		golibvirt.ErrConfigUnsupported:
		return hypervisor.ErrInvalidSpec
	case golibvirt.ErrNoConnect, golibvirt.ErrInvalidConn, golibvirt.ErrRPC:
		return hypervisor.ErrUnavailable
	}
	return nil
}

// isTransportErr reports whether err came from the connection rather than
// from libvirt: go-libvirt returns libvirt's own failures as golibvirt.Error
// and everything else (EOF, EPIPE, interrupted calls) as other errors.
func isTransportErr(err error) bool {
	if errors.Is(err, golibvirt.ErrInterrupted) {
		return true
	}
	var lerr golibvirt.Error
	if errors.As(err, &lerr) || errors.Is(err, golibvirt.ErrUnsupported) {
		return false
	}
	return true
}

func isCode(err error, code golibvirt.ErrorNumber) bool {
	var lerr golibvirt.Error
	return errors.As(err, &lerr) && golibvirt.ErrorNumber(lerr.Code) == code
}

func isNoDomain(err error) bool { return isCode(err, golibvirt.ErrNoDomain) }
