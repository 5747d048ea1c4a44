package service

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// ImportImage asks for a copy of image name on a host, from a file in its
// image directory (path) or from another host (from); the image record is
// returned as the commit left it (IMPORTING until the agent reports).
func (s *Service) ImportImage(ctx context.Context, name, host, path, from string) (state.Image, error) {
	c := &fsm.ImportImage{Name: name, Import: state.ImageImport{HostID: host, Path: path, FromHost: from}}
	if _, err := s.apply(ctx, fsm.TypeImportImage, c); err != nil {
		return state.Image{}, err
	}
	return s.store.Image(name)
}

// DeleteImage removes an image no instance uses from the catalogue and,
// through its hosts' agents, from every host.
func (s *Service) DeleteImage(ctx context.Context, name string) error {
	_, err := s.apply(ctx, fsm.TypeDeleteImage, &fsm.DeleteImage{Name: name})
	return err
}
