// Command flotilla-xfer-bench measures Flotilla's agent-to-agent disk copy
// against qemu-img convert (over NBD with TLS) and rsync --sparse (to an
// rsync daemon), between two hosts of the test bed (scripts/testbed.sh):
// the same qcow2 image, the same destination file system, each run timed
// to the destination file synced, the methods in turn round by round,
// compared pair by pair. See bench/README.md.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flotilla-vm/flotilla/internal/mtls"
)

func main() {
	var err error
	if len(os.Args) > 1 && (os.Args[1] == "serve" || os.Args[1] == "pull") {
		if os.Args[1] == "serve" {
			err = serveRole(os.Args[2:])
		} else {
			err = pullRole(os.Args[2:])
		}
	} else {
		err = run(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-xfer-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	rounds     int
	virtualGiB int
	allocMiB   int
	seed       uint64
	keep       bool
	repo       string
	rateLimit  int64
	profDir    string
}

// profile is the --cpuprofile flag of a role (a harmless --cpuprofile=
// without --profile-dir).
func (o options) profile(name string) string {
	if o.profDir == "" {
		return "--cpuprofile="
	}
	return "--cpuprofile=" + o.profDir + name + ".prof"
}

// host is a test bed host: its namespaces (by its libvirtd) and where the
// machine sees its /var/lib/flotilla.
type host struct {
	name, addr string
	pid        int
	flotDir    string // machine path of the host's /var/lib/flotilla
}

const inHostDir = "/var/lib/flotilla/xfer-bench" // the bench's directory, as a host sees it

func (h host) path(p string) string {
	return filepath.Join(h.flotDir, strings.TrimPrefix(p, "/var/lib/flotilla/"))
}

func (h host) cmd(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--target", strconv.Itoa(h.pid), "--mount", "--net", "--", name}, args...)...)
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("flotilla-xfer-bench", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "n", 5, "counted rounds (each method once a round, after one warm-up round)")
	fs.IntVar(&o.virtualGiB, "virtual-gib", 2, "the image's virtual size")
	fs.IntVar(&o.allocMiB, "alloc-mib", 384, "about how much of it is written, in scattered extents")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the allocation pattern")
	fs.BoolVar(&o.keep, "keep", false, "keep the test bed and the files")
	fs.StringVar(&o.repo, "repo", ".", "the repository (for scripts/testbed.sh)")
	fs.Int64Var(&o.rateLimit, "rate-limit", 0, "also run Flotilla with this --copy-rate-limit (bytes/s) on the source")
	fs.StringVar(&o.profDir, "profile-dir", "", "write CPU profiles of Flotilla's two sides there (the last run's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.profDir != "" {
		o.profDir = filepath.Clean(o.profDir) + "/"
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (the test bed makes namespaces)")
	}
	for _, c := range []string{"nsenter", "qemu-img", "qemu-io", "qemu-nbd", "rsync", "ssh", "ssh-keygen", "/usr/sbin/sshd"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not installed (scripts/setup-host.sh installs it)", c)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// One test bed per machine: wait for it as the tests do.
	lock, err := os.OpenFile("/tmp/flotilla-testbed-tests.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		fmt.Fprintln(os.Stderr, "waiting for the test bed (another test or bench has it)...")
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
	}
	tb := filepath.Join(o.repo, "scripts", "testbed.sh")
	if out, err := exec.Command(tb, "up", "2").CombinedOutput(); err != nil {
		return fmt.Errorf("testbed up: %v: %s", err, out)
	}
	if !o.keep {
		defer func() {
			if out, err := exec.Command(tb, "down").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "testbed down: %v: %s\n", err, out)
			}
		}()
	}
	out, err := exec.Command(tb, "status").Output()
	if err != nil {
		return fmt.Errorf("testbed status: %v: %s", err, out)
	}
	hosts, err := parseStatus(string(out))
	if err != nil {
		return err
	}
	src, dst := hosts[1], hosts[2]

	work, err := os.MkdirTemp("", "xfer-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(work)
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = p.Process.Kill()
				<-done
			}
		}
	}()

	for _, h := range []host{src, dst} {
		if err := os.RemoveAll(h.path(inHostDir)); err != nil {
			return err
		}
		if err := os.MkdirAll(h.path(inHostDir), 0o755); err != nil {
			return err
		}
	}
	if !o.keep {
		defer os.RemoveAll(src.path(inHostDir))
		defer os.RemoveAll(dst.path(inHostDir))
	}

	// The image.
	srcFile := filepath.Join(inHostDir, "src.qcow2")
	fmt.Fprintf(os.Stderr, "making a %d GiB qcow2 image with about %d MiB written...\n", o.virtualGiB, o.allocMiB)
	img, err := makeImage(work, src.path(srcFile), o)
	if err != nil {
		return err
	}

	// Certificates: the agents' (tb-1, tb-2) and qemu's layout of the same.
	if err := os.MkdirAll(filepath.Join(work, "ca"), 0o700); err != nil {
		return err
	}
	ca, err := mtls.NewCA(filepath.Join(work, "ca"))
	if err != nil {
		return err
	}
	srvCert, err := ca.Issue("tb-1", mtls.RoleAgent, src.addr)
	if err != nil {
		return err
	}
	cliCert, err := ca.Issue("tb-2", mtls.RoleAgent, dst.addr)
	if err != nil {
		return err
	}
	qemuSrv, qemuCli := filepath.Join(work, "qemu-server"), filepath.Join(work, "qemu-client")
	for _, l := range []struct {
		dir, role string
		f         mtls.Files
	}{{qemuSrv, "server", srvCert}, {qemuCli, "client", cliCert}} {
		if err := os.MkdirAll(l.dir, 0o700); err != nil {
			return err
		}
		for from, to := range map[string]string{l.f.CA: "ca-cert.pem", l.f.Cert: l.role + "-cert.pem", l.f.Key: l.role + "-key.pem"} {
			b, err := os.ReadFile(from)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(l.dir, to), b, 0o600); err != nil {
				return err
			}
		}
	}
	tokenB := make([]byte, 16)
	rand.Read(tokenB)
	token := hex.EncodeToString(tokenB)

	// The servers, up for the whole run: Flotilla's source agent side and
	// qemu-nbd on the source, the rsync daemon on the target.
	start := func(h host, ready func() bool, name string, args ...string) error {
		c := h.cmd(name, args...)
		logf, err := os.Create(filepath.Join(work, filepath.Base(name)+fmt.Sprint(len(procs))+".log"))
		if err != nil {
			return err
		}
		c.Stdout, c.Stderr = logf, logf
		if err := c.Start(); err != nil {
			return err
		}
		procs = append(procs, c)
		for deadline := time.Now().Add(15 * time.Second); !ready(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logf.Name())
				return fmt.Errorf("%s did not come up: %s", name, b)
			}
		}
		return nil
	}
	listening := func(h host, port int) func() bool {
		return func() bool {
			return h.cmd("sh", "-c", fmt.Sprintf("ss -Hltn 'sport = :%d' | grep -q LISTEN", port)).Run() == nil
		}
	}
	flotPort, nbdPort, rsyncPort := 7460, 10809, 8730
	if err := start(src, listening(src, flotPort), self, "serve", "--listen", fmt.Sprintf("%s:%d", src.addr, flotPort),
		"--file", srcFile, "--certs", filepath.Dir(srvCert.CA), "--token", token, o.profile("serve")); err != nil {
		return err
	}
	if err := start(src, listening(src, nbdPort), "qemu-nbd", "--object",
		"tls-creds-x509,id=tls0,endpoint=server,dir="+qemuSrv+",verify-peer=on", "--tls-creds", "tls0",
		"-f", "qcow2", "-r", "--persistent", "--shared=8", "-x", "bench", "-b", src.addr, "-p", strconv.Itoa(nbdPort), srcFile); err != nil {
		return err
	}
	rsyncConf := filepath.Join(work, "rsyncd.conf")
	if err := os.WriteFile(rsyncConf, []byte(fmt.Sprintf("use chroot = false\nuid = root\ngid = root\n[bench]\npath = %s\nread only = false\n", inHostDir)), 0o644); err != nil {
		return err
	}
	if err := start(dst, listening(dst, rsyncPort), "rsync", "--daemon", "--no-detach", "--config", rsyncConf,
		"--address", dst.addr, "--port", strconv.Itoa(rsyncPort)); err != nil {
		return err
	}
	// An sshd of the bench's own on the target (keys made here, nothing of
	// the system's), for rsync as operators run it between hosts: over ssh.
	sshPort := 2222
	for _, k := range []string{"host_key", "client_key"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(work, k)).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(work, "client_key.pub"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "authorized_keys"), pub, 0o600); err != nil {
		return err
	}
	sshdConf := filepath.Join(work, "sshd_config")
	if err := os.WriteFile(sshdConf, []byte(fmt.Sprintf("Port %d\nListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\n"+
		"PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"+
		"StrictModes no\nPidFile none\n", sshPort, dst.addr, filepath.Join(work, "host_key"), filepath.Join(work, "authorized_keys"))), 0o600); err != nil {
		return err
	}
	if err := dst.cmd("mkdir", "-p", "/run/sshd").Run(); err != nil {
		return err
	}
	if err := start(dst, listening(dst, sshPort), "/usr/sbin/sshd", "-D", "-e", "-f", sshdConf); err != nil {
		return err
	}
	sshCmd := fmt.Sprintf("ssh -p %d -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
		sshPort, filepath.Join(work, "client_key"))
	if err := start(src, listening(src, flotPort+2), self, "serve", "--listen", fmt.Sprintf("%s:%d", src.addr, flotPort+2),
		"--file", srcFile, "--certs", filepath.Dir(srvCert.CA), "--token", token, "--plaintext"); err != nil {
		return err
	}
	if o.rateLimit > 0 {
		if err := start(src, listening(src, flotPort+1), self, "serve", "--listen", fmt.Sprintf("%s:%d", src.addr, flotPort+1),
			"--file", srcFile, "--certs", filepath.Dir(srvCert.CA), "--token", token, "--rate-limit", fmt.Sprint(o.rateLimit)); err != nil {
			return err
		}
	}

	dstFile := filepath.Join(inHostDir, "dst.qcow2")
	pull := func(port int, comp string) []string {
		return []string{self, "pull", "--from", fmt.Sprintf("%s:%d", src.addr, port), "--dst", dstFile,
			"--certs", filepath.Dir(cliCert.CA), "--token", token, "--compression", comp, o.profile("pull-" + comp)}
	}
	methods := []method{
		{name: "flotilla (zstd when it pays)", on: dst, argv: pull(flotPort, "auto"), sameBytes: true},
		{name: "flotilla (no compression)", on: dst, argv: pull(flotPort, "off"), sameBytes: true},
		{name: "qemu-img convert -O qcow2 (NBD, TLS)", on: dst, argv: []string{"qemu-img", "convert", "-O", "qcow2",
			"--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + qemuCli,
			"--image-opts", fmt.Sprintf("driver=nbd,host=%s,port=%d,export=bench,tls-creds=tls0", src.addr, nbdPort), dstFile}},
		{name: "qemu-img convert -O qcow2 (local, no network)", local: true, argv: []string{"qemu-img", "convert", "-O", "qcow2",
			src.path(srcFile), dst.path(dstFile)}},
		{name: "flotilla (no compression, no TLS)", on: dst, argv: append(pull(flotPort+2, "off"), "--plaintext"), sameBytes: true},
		{name: "rsync --sparse (daemon, no TLS)", on: src, argv: []string{"rsync", "--sparse", srcFile,
			fmt.Sprintf("rsync://%s:%d/bench/dst.qcow2", dst.addr, rsyncPort)}, sameBytes: true},
		{name: "rsync --sparse (over ssh)", on: src, argv: []string{"rsync", "--sparse", "-e", sshCmd, srcFile,
			fmt.Sprintf("root@%s:%s", dst.addr, dstFile)}, sameBytes: true},
	}
	if o.rateLimit > 0 {
		methods = append(methods, method{name: fmt.Sprintf("flotilla, source limited to %s/s", mib(o.rateLimit)), on: dst,
			argv: pull(flotPort+1, "auto"), sameBytes: true, limited: true})
	}

	fmt.Fprintf(os.Stderr, "%d rounds of %d methods (plus a warm-up round)...\n", o.rounds, len(methods))
	for r := 0; r <= o.rounds; r++ {
		order := mrand.Perm(len(methods))
		for _, i := range order {
			m := &methods[i]
			if m.limited && r > 1 {
				continue // slow by design: two runs say enough
			}
			res, err := m.run(dst, dstFile, img, src.path(srcFile), r == 0)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if r > 0 {
				m.results = append(m.results, res)
			}
		}
	}
	report(os.Stdout, img, methods)
	return nil
}

// image is what makeImage made.
type image struct {
	virtual, fileSize, allocated, data int64 // data: guest bytes with data (qemu-img map)
}

// makeImage writes a qcow2 image of virtualGiB with about allocMiB of
// scattered extents: 64 KiB to 8 MiB each, a random place each; 45 % of
// them random bytes, 40 % text (log-like lines, compresses about 4x), 15 %
// written as zeros (zero clusters, as a guest's discard leaves).
func makeImage(work, path string, o options) (image, error) {
	rng := mrand.New(mrand.NewPCG(o.seed, 7))
	randFile, textFile := filepath.Join(work, "random.bin"), filepath.Join(work, "text.bin")
	rb := make([]byte, 8<<20)
	for i := range rb {
		rb[i] = byte(rng.Uint32())
	}
	var text bytes.Buffer
	for i := 0; text.Len() < 8<<20; i++ {
		fmt.Fprintf(&text, "2026-12-07T04:%02d:%02d.%06dZ host-%d kernel: [%8d.%06d] eth0: rx %d packets, %d bytes, worker %x\n",
			i/60%60, i%60, rng.IntN(1e6), rng.IntN(32), i, rng.IntN(1e6), rng.IntN(1e5), rng.IntN(1e8), rng.Uint32())
	}
	if err := os.WriteFile(randFile, rb, 0o644); err != nil {
		return image{}, err
	}
	if err := os.WriteFile(textFile, text.Bytes()[:8<<20], 0o644); err != nil {
		return image{}, err
	}
	virtual := int64(o.virtualGiB) << 30
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", path, strconv.FormatInt(virtual, 10)).CombinedOutput(); err != nil {
		return image{}, fmt.Errorf("qemu-img create: %v: %s", err, out)
	}
	sizes := []int64{64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20}
	args := []string{"-f", "qcow2"}
	for written := int64(0); written < int64(o.allocMiB)<<20; {
		n := sizes[rng.IntN(len(sizes))]
		off := rng.Int64N((virtual-n)>>16) << 16
		var c string
		switch p := rng.IntN(100); {
		case p < 45:
			c = fmt.Sprintf("write -s %s %d %d", randFile, off, n)
		case p < 85:
			c = fmt.Sprintf("write -s %s %d %d", textFile, off, n)
		default:
			c = fmt.Sprintf("write -z %d %d", off, n)
		}
		args = append(args, "-c", c)
		written += n
	}
	args = append(args, path)
	if out, err := exec.Command("qemu-io", args...).CombinedOutput(); err != nil {
		return image{}, fmt.Errorf("qemu-io: %v: %s", err, tail(out))
	}
	img := image{virtual: virtual}
	st, err := os.Stat(path)
	if err != nil {
		return image{}, err
	}
	img.fileSize, img.allocated = st.Size(), st.Sys().(*syscall.Stat_t).Blocks*512
	out, err := exec.Command("qemu-img", "map", "--output=json", "-f", "qcow2", path).Output()
	if err != nil {
		return image{}, fmt.Errorf("qemu-img map: %v", err)
	}
	var extents []struct {
		Length int64 `json:"length"`
		Data   bool  `json:"data"`
	}
	if err := json.Unmarshal(out, &extents); err != nil {
		return image{}, err
	}
	for _, e := range extents {
		if e.Data {
			img.data += e.Length
		}
	}
	return img, nil
}

// method is one way of copying the image, run on a host.
type method struct {
	name      string
	local     bool // run in the machine's own namespaces (argv has machine paths)
	on        host
	argv      []string
	sameBytes bool // the copy is the same file (else the same guest data)
	limited   bool
	results   []result
}

type result struct {
	seconds   float64
	cpu       float64 // the client process's user+system seconds
	allocated int64   // the copy's st_blocks in bytes
	wire      int64   // data bytes on the wire, as Flotilla's puller counts them (-1: unknown)
}

// run copies once: removes the last copy, runs the command, syncs the copy
// (timed: what a copy costs until it is on disk), and checks it the first
// time.
func (m *method) run(dst host, dstFile string, img image, srcPath string, check bool) (result, error) {
	out := dst.path(dstFile)
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return result{}, err
	}
	// What the machine wrote for the last run is not this run's cost.
	_ = exec.Command("sync").Run()
	c := m.on.cmd(m.argv[0], m.argv[1:]...)
	if m.local {
		c = exec.Command(m.argv[0], m.argv[1:]...)
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	start := time.Now()
	if err := c.Run(); err != nil {
		return result{}, fmt.Errorf("%v: %s", err, tail(stderr.Bytes()))
	}
	f, err := os.Open(out)
	if err != nil {
		return result{}, err
	}
	err = f.Sync()
	secs := time.Since(start).Seconds()
	st, _ := f.Stat()
	f.Close()
	if err != nil {
		return result{}, err
	}
	res := result{seconds: secs, allocated: st.Sys().(*syscall.Stat_t).Blocks * 512, wire: -1}
	var pulled struct {
		Wire int64 `json:"wire_bytes"`
	}
	if json.Unmarshal(stdout.Bytes(), &pulled) == nil && pulled.Wire > 0 {
		res.wire = pulled.Wire
	}
	if u := c.ProcessState; u != nil {
		res.cpu = (u.UserTime() + u.SystemTime()).Seconds()
	}
	if check {
		if m.sameBytes {
			if err := exec.Command("cmp", "-s", srcPath, out).Run(); err != nil {
				return result{}, fmt.Errorf("the copy differs from the source file")
			}
		} else if o, err := exec.Command("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", srcPath, out).CombinedOutput(); err != nil {
			return result{}, fmt.Errorf("the copy's guest data differs: %v %s", err, o)
		}
	}
	return res, nil
}

func report(w *os.File, img image, methods []method) {
	fmt.Fprintf(w, "image: qcow2, %s virtual, file %s, allocated %s, guest data %s (scattered extents: random, text, zero clusters)\n",
		mib(img.virtual), mib(img.fileSize), mib(img.allocated), mib(img.data))
	fmt.Fprintf(w, "between test bed hosts tb-1 -> tb-2 (own namespaces, veth bridge); timed to the copy fsynced; %d rounds, methods in random order each round\n\n", len(methods[0].results))
	base := methods[0].results
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tmedian s\tmin s\tmax s\tMiB/s of guest data\tthis time / flotilla time (pairwise median)\tclient CPU s\tcopy allocated\tdata on the wire\t")
	for _, m := range methods {
		secs := pick(m.results, func(r result) float64 { return r.seconds })
		cpu := pick(m.results, func(r result) float64 { return r.cpu })
		var ratios []float64
		for i := range m.results {
			if i < len(base) {
				ratios = append(ratios, m.results[i].seconds/base[i].seconds)
			}
		}
		med := median(secs)
		wire := "-"
		if w := m.results[len(m.results)-1].wire; w >= 0 {
			wire = mib(w)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.0f\t%.2fx\t%.2f\t%s\t%s\t\n", m.name, med, minf(secs), maxf(secs),
			float64(img.data)/(1<<20)/med, median(ratios), median(cpu), mib(m.results[len(m.results)-1].allocated), wire)
	}
	tw.Flush()
}

func pick(rs []result, f func(result) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minf(v []float64) float64 { s := append([]float64(nil), v...); sort.Float64s(s); return s[0] }
func maxf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)-1]
}

func mib(n int64) string {
	if n >= 10<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func parseStatus(out string) (map[int]host, error) {
	hosts := map[int]host{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "host" {
			continue
		}
		kv := map[string]string{}
		for _, w := range f[1:] {
			if k, v, ok := strings.Cut(w, "="); ok {
				kv[k] = v
			}
		}
		id, err1 := strconv.Atoi(kv["id"])
		pid, err2 := strconv.Atoi(kv["libvirtd"])
		if err1 != nil || err2 != nil || kv["state"] != "ok" {
			return nil, fmt.Errorf("test bed host line %q", line)
		}
		hosts[id] = host{name: fmt.Sprintf("tb-%d", id), addr: kv["addr"], pid: pid, flotDir: filepath.Join(kv["dir"], "flotilla")}
	}
	if len(hosts) < 2 {
		return nil, fmt.Errorf("test bed status: %d hosts", len(hosts))
	}
	return hosts, nil
}
