package libvirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The cloud-init NoCloud seed: an ISO9660 image labelled "cidata" holding
// meta-data, user-data and network-config (Rock Ridge names, which
// cloud-init and the test guest read), written in Go (go-diskfs) so that
// no request data reaches a command line. Every value in it comes from a
// validated spec; the YAML quotes each one as a JSON string, which YAML
// reads as the same string.

// seedVolumeID is the label NoCloud looks for.
const seedVolumeID = "cidata"

// wantsSeed reports whether an instance gets a seed: when it has guest
// configuration or NICs (whose addresses the seed carries).
func wantsSeed(spec hypervisor.DomainSpec) bool {
	return spec.Seed != nil || len(spec.NICs) > 0
}

// seedFiles are the seed's files by name.
func seedFiles(spec hypervisor.DomainSpec) map[string][]byte {
	var g hypervisor.GuestSeed
	if spec.Seed != nil {
		g = *spec.Seed
	}
	host := g.Hostname
	if host == "" && len(spec.NICs) > 0 {
		host = spec.NICs[0].Hostname
	}
	if host == "" {
		host = spec.ID
	}
	var meta strings.Builder
	fmt.Fprintf(&meta, "instance-id: %s\nlocal-hostname: %s\n", yamlString(spec.ID), yamlString(host))
	// Keys in meta-data reach the default user whatever user-data says,
	// so the user's own user-data need not be rewritten to add them.
	if len(g.SSHAuthorizedKeys) > 0 {
		meta.WriteString("public-keys:\n")
		for _, k := range g.SSHAuthorizedKeys {
			fmt.Fprintf(&meta, "  - %s\n", yamlString(k))
		}
	}

	user := g.UserData
	if user == "" {
		var b strings.Builder
		b.WriteString("#cloud-config\n")
		if len(g.SSHAuthorizedKeys) > 0 {
			b.WriteString("ssh_authorized_keys:\n")
			for _, k := range g.SSHAuthorizedKeys {
				fmt.Fprintf(&b, "  - %s\n", yamlString(k))
			}
		}
		user = b.String()
	}

	var net strings.Builder
	net.WriteString("version: 2\nethernets:\n")
	for i, n := range spec.NICs {
		fmt.Fprintf(&net, "  nic%d:\n", i)
		fmt.Fprintf(&net, "    match:\n      macaddress: %s\n", yamlString(n.MAC))
		fmt.Fprintf(&net, "    addresses:\n      - %s\n", yamlString(fmt.Sprintf("%s/%d", n.IP, n.Prefix.Bits())))
		if i == 0 {
			fmt.Fprintf(&net, "    gateway4: %s\n", yamlString(n.Gateway.String()))
		}
		if n.Mode.Managed() {
			// The network's dnsmasq answers for NAME.NETWORK.
			fmt.Fprintf(&net, "    nameservers:\n      addresses:\n        - %s\n      search:\n        - %s\n",
				yamlString(n.Gateway.String()), yamlString(n.Network))
		}
	}
	if len(spec.NICs) == 0 {
		net.Reset()
		net.WriteString("version: 2\nethernets: {}\n")
	}
	return map[string][]byte{
		"meta-data":      []byte(meta.String()),
		"user-data":      []byte(user),
		"network-config": []byte(net.String()),
	}
}

// yamlString quotes s for YAML: a JSON string is a YAML double-quoted scalar.
func yamlString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// writeSeed writes spec's seed image to path, atomically: a new image is
// made beside it and renamed over it.
func writeSeed(path string, spec hypervisor.DomainSpec) (err error) {
	files := seedFiles(spec)
	total := int64(0)
	for _, c := range files {
		total += int64(len(c)) + 2048
	}
	// Room for the volume descriptors, directory and Rock Ridge records,
	// rounded to whole sectors.
	size := (total + 1<<20 + 2047) &^ 2047

	dir := filepath.Dir(path)
	id := spec.ID
	stale, _ := filepath.Glob(filepath.Join(dir, "."+id+".seed-*.iso"))
	for _, p := range stale {
		_ = os.Remove(p)
	}
	f, err := os.CreateTemp(dir, "."+id+".seed-*.iso")
	if err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	tmp := f.Name()
	f.Close()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := os.Remove(tmp); err != nil { // CreateFromPath makes it anew
		return fmt.Errorf("write seed: %w", err)
	}
	// go-diskfs stages the files here: private (0700), off the disk dir.
	work, err := os.MkdirTemp("", "flotilla-seed-")
	if err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	defer os.RemoveAll(work)

	b, err := file.CreateFromPath(tmp, size)
	if err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = b.Close()
		}
	}()
	fs, err := iso9660.Create(b, size, 0, 2048, work)
	if err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	for _, name := range []string{"meta-data", "user-data", "network-config"} {
		w, err := fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("write seed %s: %w", name, err)
		}
		_, werr := w.Write(files[name])
		if err := errors.Join(werr, w.Close()); err != nil {
			return fmt.Errorf("write seed %s: %w", name, err)
		}
	}
	if err := fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: seedVolumeID}); err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	closed = true
	if err := b.Close(); err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	if err := padVolumeID(tmp); err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	return nil
}

// padVolumeID pads the primary volume descriptor's volume identifier with
// spaces, as ISO 9660 says (go-diskfs pads it with NULs, which some label
// readers keep).
func padVolumeID(path string) error {
	const pvd, idAt, idLen = 16 * 2048, 40, 32
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 6)
	if _, err := f.ReadAt(head, pvd); err != nil {
		return err
	}
	if string(head) != "\x01CD001" {
		return fmt.Errorf("no primary volume descriptor at sector 16")
	}
	id := []byte(seedVolumeID + strings.Repeat(" ", idLen-len(seedVolumeID)))
	if _, err := f.WriteAt(id, pvd+idAt); err != nil {
		return err
	}
	return f.Close()
}
