package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func TestPowerState(t *testing.T) {
	tests := []struct {
		state       golibvirt.DomainState
		reason      int32
		managedSave bool
		want        hypervisor.PowerState
		wantReason  string
	}{
		{golibvirt.DomainRunning, int32(golibvirt.DomainRunningBooted), false, hypervisor.PowerRunning, "booted"},
		{golibvirt.DomainRunning, int32(golibvirt.DomainRunningRestored), false, hypervisor.PowerRunning, "restored"},
		{golibvirt.DomainBlocked, 0, false, hypervisor.PowerRunning, "unknown"},
		{golibvirt.DomainPaused, int32(golibvirt.DomainPausedUser), false, hypervisor.PowerPaused, "user"},
		{golibvirt.DomainPaused, int32(golibvirt.DomainPausedSave), false, hypervisor.PowerPaused, "save"},
		{golibvirt.DomainPmsuspended, 0, false, hypervisor.PowerPaused, "unknown"},
		{golibvirt.DomainShutdown, int32(golibvirt.DomainShutdownUser), false, hypervisor.PowerShuttingDown, "user"},
		{golibvirt.DomainShutoff, int32(golibvirt.DomainShutoffDestroyed), false, hypervisor.PowerShutOff, "destroyed"},
		{golibvirt.DomainShutoff, int32(golibvirt.DomainShutoffShutdown), false, hypervisor.PowerShutOff, "shutdown"},
		{golibvirt.DomainShutoff, int32(golibvirt.DomainShutoffSaved), true, hypervisor.PowerSavedToDisk, "saved"},
		{golibvirt.DomainShutoff, int32(golibvirt.DomainShutoffUnknown), true, hypervisor.PowerSavedToDisk, "unknown"},
		{golibvirt.DomainCrashed, int32(golibvirt.DomainCrashedPanicked), false, hypervisor.PowerCrashed, "panicked"},
		{golibvirt.DomainNostate, 0, false, hypervisor.PowerUnknown, "unknown"},
		{golibvirt.DomainRunning, 99, false, hypervisor.PowerRunning, "reason-99"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d/%v", tt.state, tt.reason, tt.managedSave), func(t *testing.T) {
			got, reason := powerState(int32(tt.state), tt.reason, tt.managedSave)
			if got != tt.want || reason != tt.wantReason {
				t.Fatalf("got (%s, %s), want (%s, %s)", got, reason, tt.want, tt.wantReason)
			}
		})
	}
}

func TestWrapErr(t *testing.T) {
	lv := func(code golibvirt.ErrorNumber) error {
		return golibvirt.Error{Code: uint32(code), Message: "libvirt says no"}
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"no domain", lv(golibvirt.ErrNoDomain), hypervisor.ErrNotFound},
		{"wrapped no domain", fmt.Errorf("define: %w", lv(golibvirt.ErrNoDomain)), hypervisor.ErrNotFound},
		{"exists", lv(golibvirt.ErrDomExist), hypervisor.ErrAlreadyExists},
		{"invalid op", lv(golibvirt.ErrOperationInvalid), hypervisor.ErrInvalidState},
		{"xml", lv(golibvirt.ErrXMLDetail), hypervisor.ErrInvalidSpec},
		{"interrupted", golibvirt.ErrInterrupted, hypervisor.ErrUnavailable},
		{"eof", io.EOF, hypervisor.ErrUnavailable},
		{"deadline", context.DeadlineExceeded, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := wrapErr("op", "vm-1", tt.err)
			if !errors.Is(got, tt.want) {
				t.Fatalf("wrapErr(%v) = %v, want it to wrap %v", tt.err, got, tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Fatalf("original error lost from chain: %v", got)
			}
		})
	}
	if got := wrapErr("op", "vm-1", lv(golibvirt.ErrInternalError)); errors.Is(got, hypervisor.ErrUnavailable) {
		t.Fatalf("a libvirt error is not a transport error: %v", got)
	}
}
