package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-vm/flotilla/agent/transfer"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/libvirt"
	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// The two roles the bench runs itself as, inside a test bed host's
// namespaces: the source agent's side of a copy (serve) and the target's
// (pull), each a transfer.Transfer over a driver that only opens or
// writes one file, with mutual TLS as agents use it.

const benchID = "bench"

// fileDriver is the part of a hypervisor driver a Transfer uses to copy a
// disk: the source's OpenDisk (the file itself, as the libvirt driver
// hands out an overlay) and Status, the target's ImportDomain (the libvirt
// driver's own sparse write, then a rename).
type fileDriver struct {
	hypervisor.Driver // nil: any other method is a bug here
	src, dst, dir     string
}

func (d *fileDriver) OpenDisk(_ context.Context, _ string, _ hypervisor.DiskLayer) (io.ReadCloser, int64, error) {
	f, err := os.Open(d.src)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

func (d *fileDriver) Status(context.Context, string) (hypervisor.DomainStatus, error) {
	return hypervisor.DomainStatus{State: hypervisor.PowerShutOff}, nil
}

func (d *fileDriver) ImportDomain(_ context.Context, _ hypervisor.DomainSpec, disk io.Reader) error {
	tmp, err := libvirt.ReceiveFile(d.dir, benchID, disk, 64<<30)
	if err != nil {
		return err
	}
	return os.Rename(tmp, d.dst)
}

func (d *fileDriver) Delete(context.Context, string) error { return os.Remove(d.dst) }

func roleLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// serve: offer the file to tb-2 and serve pulls until killed.
func serveRole(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "", "host:port")
	file := fs.String("file", "", "the disk")
	certs := fs.String("certs", "", "dir of the test CA's files")
	token := fs.String("token", "", "offer token")
	rate := fs.Int64("rate-limit", 0, "bytes/s")
	plain := fs.Bool("plaintext", false, "no TLS (to compare with tools that have none)")
	prof := fs.String("cpuprofile", "", "write a CPU profile here (until stopped)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	files := certFiles(*certs, "tb-1")
	stc, err := mtls.Server(files)
	if err != nil {
		return err
	}
	tr := transfer.New(transfer.Config{HostID: "tb-1", Driver: &fileDriver{src: *file}, Logger: roleLogger(),
		RequireClientIdentity: !*plain, RateLimit: *rate})
	if err := tr.Offer(context.Background(), benchID, hypervisor.DiskWhole, *token, "tb-2", time.Now().Add(24*time.Hour)); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	opts := transfer.ServerOptions()
	if !*plain {
		opts = append(opts, grpc.Creds(transfer.ServerCredentials(stc)))
	}
	srv := grpc.NewServer(opts...)
	tr.Register(srv)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Stop()
	}()
	fmt.Println("ready")
	return srv.Serve(lis)
}

// pull: pull the offered file from addr into dst; print what it took.
func pullRole(args []string) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	from := fs.String("from", "", "host:port")
	dst := fs.String("dst", "", "where the copy goes")
	certs := fs.String("certs", "", "dir of the test CA's files")
	token := fs.String("token", "", "offer token")
	compression := fs.String("compression", "auto", "auto or off")
	prof := fs.String("cpuprofile", "", "write a CPU profile here")
	plain := fs.Bool("plaintext", false, "no TLS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	comp, err := transfer.ParseCompression(*compression)
	if err != nil {
		return err
	}
	ctc, err := mtls.Client(certFiles(*certs, "tb-2"))
	if err != nil {
		return err
	}
	if *plain {
		ctc = nil
	}
	tr := transfer.New(transfer.Config{HostID: "tb-2", Logger: roleLogger(), ClientTLS: ctc, Compression: comp,
		Driver: &fileDriver{dst: *dst, dir: filepath.Dir(*dst)}})
	start := time.Now()
	spec := hypervisor.DomainSpec{ID: benchID, Name: benchID, VCPUs: 1, MemoryMiB: 128, Image: "bench"}
	if err := tr.Import(context.Background(), spec, "tb-1", *from, *token); err != nil {
		return err
	}
	_, pulled := tr.Stats()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"wire_bytes": pulled, "seconds": time.Since(start).Seconds()})
}

func certFiles(dir, name string) mtls.Files {
	return mtls.Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
}
