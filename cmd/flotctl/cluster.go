package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flotilla-vm/flotilla/internal/version"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// serverCommands are the subcommands of "cluster servers".
func serverCommands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		leaf(c, "list", "List the cluster's members and its leader", 0, defineNone, runServerList),
		leaf(c, "add", "Add a member (started with --join or empty) to the cluster", 1, defineAddServer, runAddServer),
		leaf(c, "remove", "Remove a member from the cluster", 1, defineNone, runRemoveServer),
	}
}

func runServerList(ctx context.Context, c *cli, _ []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.cluster.ListServers(cctx, &flotillav1.ListServersRequest{})
	if err != nil {
		return err
	}
	return printServers(c, resp.GetServers())
}

func defineAddServer(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.AddServerRequest, error) {
	raft := fs.String("raft-address", "", "the member's Raft address, host:port (required)")
	api := fs.String("api-address", "", "the member's API address, host:port (required)")
	logMax := fs.Uint32("log-version-max", 0, "the newest log version the member's binary understands (0: not stated)")
	return func(pos []string) (*flotillav1.AddServerRequest, error) {
		if *raft == "" || *api == "" {
			return nil, &usageError{name, "--raft-address and --api-address are required"}
		}
		return &flotillav1.AddServerRequest{Id: pos[0], RaftAddress: *raft, ApiAddress: *api, LogVersionMax: *logMax}, nil
	}
}

func runAddServer(ctx context.Context, c *cli, req *flotillav1.AddServerRequest) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.cluster.AddServer(cctx, req)
	if err != nil {
		return err
	}
	return printServers(c, resp.GetServers())
}

func runRemoveServer(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.cluster.RemoveServer(cctx, &flotillav1.RemoveServerRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	return printServers(c, resp.GetServers())
}

func printServers(c *cli, servers []*flotillav1.Server) error {
	if c.out.document() {
		return writeDoc(c.stdout, c.out.asList(), servers)
	}
	rows := make([][]string, 0, len(servers))
	for _, s := range servers {
		rows = append(rows, []string{s.GetId(), s.GetSuffrage(), yesNo(s.GetLeader()), s.GetRaftAddress(), s.GetApiAddress()})
	}
	return writeTable(c.stdout, []string{"ID", "SUFFRAGE", "LEADER", "RAFT_ADDRESS", "API_ADDRESS"}, rows)
}

func defineNodeStatus(fs *pflag.FlagSet, _ string) func([]string) (*flotillav1.GetNodeStatusRequest, error) {
	digest := fs.Bool("digest", false, "also compute the digest of the state machine (to compare members)")
	return func([]string) (*flotillav1.GetNodeStatusRequest, error) {
		return &flotillav1.GetNodeStatusRequest{IncludeDigest: *digest}, nil
	}
}

func runNodeStatus(ctx context.Context, c *cli, req *flotillav1.GetNodeStatusRequest) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	st, err := c.cluster.GetNodeStatus(cctx, req)
	if err != nil {
		return err
	}
	if c.out.document() {
		return writeDoc(c.stdout, c.out, []*flotillav1.NodeStatus{st})
	}
	return writePairs(c, [][2]string{
		{"NODE", st.GetNodeId()},
		{"RAFT_STATE", st.GetRaftState()},
		{"LEADER", st.GetLeaderId()},
		{"LEADER_API", st.GetLeaderApiAddress()},
		{"TERM", fmt.Sprint(st.GetTerm())},
		{"COMMIT_INDEX", fmt.Sprint(st.GetCommitIndex())},
		{"APPLIED_INDEX", fmt.Sprint(st.GetAppliedIndex())},
		{"SNAPSHOT_INDEX", fmt.Sprint(st.GetLastSnapshotIndex())},
		{"REVISION", fmt.Sprint(st.GetRevision())},
		{"LOG_VERSION", fmt.Sprintf("%d (max %d)", st.GetLogVersion(), st.GetLogVersionMax())},
		{"DIGEST", st.GetStateDigest()},
	})
}

// writePairs prints NAME VALUE lines, values escaped.
func writePairs(c *cli, pairs [][2]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s\t%s\n", p[0], dash(escape(p[1])))
	}
	return tw.Flush()
}

func runSnapshot(ctx context.Context, c *cli, _ []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.cluster.TakeSnapshot(cctx, &flotillav1.TakeSnapshotRequest{})
	if err != nil {
		return err
	}
	if c.out.document() {
		return writeDoc(c.stdout, c.out, []*flotillav1.TakeSnapshotResponse{resp})
	}
	_, err = fmt.Fprintf(c.stdout, "snapshot taken at index %d\n", resp.GetSnapshotIndex())
	return err
}

// runVersion shows flotctl's version and what the API says of the
// servers' versions. NodeStatus carries no coordinator version (only the
// Raft log format it speaks); hosts carry their agent's version.
func runVersion(ctx context.Context, c *cli, _ []string) error {
	client := version.Get()
	closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	cctx, cancel := c.call(ctx)
	st, serr := c.cluster.GetNodeStatus(cctx, &flotillav1.GetNodeStatusRequest{})
	cancel()
	var hosts []*flotillav1.Host
	if serr == nil {
		cctx, cancel := c.call(ctx)
		resp, herr := c.hosts.ListHosts(cctx, &flotillav1.ListHostsRequest{})
		cancel()
		if herr == nil {
			hosts = resp.GetHosts()
		}
	}
	if c.out.document() {
		doc := fmt.Sprintf(`{"client":{"version":%q,"commit":%q,"built":%q,"go":%q}`, client.Version, client.Commit, client.Date, client.Go)
		if serr == nil {
			b, err := protojson.Marshal(st)
			if err != nil {
				return err
			}
			doc += `,"server":{"version":"","note":"the API does not report the coordinator's version","nodeStatus":` + string(b) + `,"agents":{`
			for i, h := range hosts {
				if i > 0 {
					doc += ","
				}
				doc += fmt.Sprintf("%q:%q", h.GetId(), h.GetAgentVersion())
			}
			doc += "}}"
		}
		if err := writeJSONDoc(c.stdout, c.out, []byte(doc+"}")); err != nil {
			return err
		}
		return serr
	}
	fmt.Fprintf(c.stdout, "client: flotctl %s (commit %s, built %s, %s)\n", client.Short(), client.Commit, client.Date, client.Go)
	if serr != nil {
		return serr
	}
	fmt.Fprintf(c.stdout, "server: coordinator %s does not report its version (the API's NodeStatus has none); it speaks Raft log version %d (max %d)\n",
		escape(st.GetNodeId()), st.GetLogVersion(), st.GetLogVersionMax())
	var agents []string
	for _, h := range hosts {
		agents = append(agents, escape(h.GetId())+" "+dash(escape(h.GetAgentVersion())))
	}
	if len(agents) > 0 {
		fmt.Fprintf(c.stdout, "agents: %s\n", strings.Join(agents, ", "))
	}
	return nil
}
