package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	tasksv1 "github.com/trustmesh/trustmesh/examples/grpc/gen/tasks/v1"
	"github.com/trustmesh/trustmesh/mesh"
)

var adminID = spiffeid.RequireFromString("spiffe://example.org/ns/ops/sa/admin")

// TestRun runs what `go run .` runs and checks what it prints.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	want := "AddTask: count=1, err=<nil>\n" +
		"PurgeTasks: rpc error: code = PermissionDenied desc = spiffe://example.org/ns/web/sa/frontend may not call /tasks.v1.TaskService/PurgeTasks\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestPolicy proves who may call what over mutual TLS on 127.0.0.1: the
// rules of tasks.proto and of policy.yaml, health included.
func TestPolicy(t *testing.T) {
	m := start(t)
	frontend, admin := m.client(t, frontendID), m.client(t, adminID)

	// Allowed by tasks.proto's service_access.
	wantCode(t, "frontend AddTask", codes.OK, invoke(frontend.AddTask, &tasksv1.AddTaskRequest{Title: "a"}))
	wantCode(t, "frontend ListTasks", codes.OK, invoke(frontend.ListTasks, &tasksv1.ListTasksRequest{}))
	// PurgeTasks' empty method_access leaves it to policy.yaml: admin only.
	err := invoke(frontend.PurgeTasks, &tasksv1.PurgeTasksRequest{})
	wantCode(t, "frontend PurgeTasks", codes.PermissionDenied, err)
	if got, want := status.Convert(err).Message(), frontendID.String()+" may not call /tasks.v1.TaskService/PurgeTasks"; got != want {
		t.Errorf("denial message = %q, want %q", got, want)
	}
	wantCode(t, "admin PurgeTasks", codes.OK, invoke(admin.PurgeTasks, &tasksv1.PurgeTasksRequest{}))
	wantCode(t, "admin AddTask", codes.PermissionDenied, invoke(admin.AddTask, &tasksv1.AddTaskRequest{Title: "a"}))
	// Health: ops only.
	wantCode(t, "admin health", codes.OK, invoke(admin.health.Check, &healthpb.HealthCheckRequest{}))
	wantCode(t, "frontend health", codes.PermissionDenied, invoke(frontend.health.Check, &healthpb.HealthCheckRequest{}))
}

// TestPolicyReload proves that an edit of the policy file changes the
// decision while the server runs, and that a file that does not parse
// changes nothing.
func TestPolicyReload(t *testing.T) {
	m := start(t)
	frontend, admin := m.client(t, frontendID), m.client(t, adminID)
	wantCode(t, "frontend PurgeTasks", codes.PermissionDenied, invoke(frontend.PurgeTasks, &tasksv1.PurgeTasksRequest{}))

	// The frontend now purges, the admin no longer does.
	m.writePolicy(t, strings.ReplaceAll(readPolicy(t), adminID.String(), frontendID.String()))
	m.waitLog(t, "policy: reloaded")
	wantCode(t, "frontend PurgeTasks after the edit", codes.OK, invoke(frontend.PurgeTasks, &tasksv1.PurgeTasksRequest{}))
	wantCode(t, "admin PurgeTasks after the edit", codes.PermissionDenied, invoke(admin.PurgeTasks, &tasksv1.PurgeTasksRequest{}))

	m.writePolicy(t, "version: 1\nrules: [")
	m.waitLog(t, "policy: reload rejected; the last good policy stays in force")
	wantCode(t, "frontend PurgeTasks after a bad edit", codes.OK, invoke(frontend.PurgeTasks, &tasksv1.PurgeTasksRequest{}))
}

// TestPolicyReloadKeepsMethodsCovered proves that an edit that would leave
// a served method (PurgeTasks) with no allow rule is rejected while the
// server runs, as it would be at start-up.
func TestPolicyReloadKeepsMethodsCovered(t *testing.T) {
	m := start(t)
	admin := m.client(t, adminID)
	m.writePolicy(t, dropRule(t, readPolicy(t), "admin-purges-tasks"))
	m.waitLog(t, "policy: reload rejected; the last good policy stays in force")
	wantCode(t, "admin PurgeTasks after a bad edit", codes.OK, invoke(admin.PurgeTasks, &tasksv1.PurgeTasksRequest{}))
}

// TestStrangerIsRefused proves that a caller whose SVID comes from another
// CA, for the same trust domain and ID, is refused at the handshake.
func TestStrangerIsRefused(t *testing.T) {
	m := start(t)
	other, err := certs.NewCA(serverID.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	svid, err := other.Issue(certs.IssueRequest{ID: frontendID})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mesh.DialGRPC(m.addr, mesh.Credentials{SVID: svid, Bundles: m.ca.Bundle()}, serverID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wantCode(t, "stranger AddTask", codes.Unavailable,
		invoke(tasksv1.NewTaskServiceClient(conn).AddTask, &tasksv1.AddTaskRequest{Title: "a"}))
}

// testMesh is one task service on 127.0.0.1 with its CA, policy file and log.
type testMesh struct {
	ca         *certs.CA
	addr       string
	policyFile string
	logs       chan string
}

// start serves the task service with a copy of policy.yaml until the test ends.
func start(t *testing.T) *testMesh {
	t.Helper()
	ca, err := certs.NewCA(serverID.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	m := &testMesh{ca: ca, policyFile: filepath.Join(t.TempDir(), "policy.yaml"), logs: make(chan string, 100)}
	m.writePolicy(t, readPolicy(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, m.creds(t, serverID), m.policyFile, ln, slog.New(logSignal(m.logs))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	// The first call waits for Serve to accept it, so afterwards the policy
	// file has been loaded and is watched.
	if err := invoke(m.client(t, adminID).health.Check, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("the server does not answer: %v", err)
	}
	return m
}

func (m *testMesh) creds(t *testing.T, id spiffeid.ID) mesh.Credentials {
	t.Helper()
	svid, err := m.ca.Issue(certs.IssueRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return mesh.Credentials{SVID: svid, Bundles: m.ca.Bundle()}
}

// clients are the task service and health clients of one caller.
type clients struct {
	tasksv1.TaskServiceClient
	health healthpb.HealthClient
}

func (m *testMesh) client(t *testing.T, id spiffeid.ID) clients {
	t.Helper()
	conn, err := mesh.DialGRPC(m.addr, m.creds(t, id), serverID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{tasksv1.NewTaskServiceClient(conn), healthpb.NewHealthClient(conn)}
}

// writePolicy replaces the policy file atomically, as an editor would.
func (m *testMesh) writePolicy(t *testing.T, contents string) {
	t.Helper()
	tmp := m.policyFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, m.policyFile); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits for the server's next "policy: " log line, the outcome of
// a reload, and fails unless it is msg.
func (m *testMesh) waitLog(t *testing.T, msg string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-m.logs:
			if !strings.HasPrefix(got, "policy: ") {
				continue
			}
			if got != msg {
				t.Fatalf("the server logged %q, want %q", got, msg)
			}
			return
		case <-deadline:
			t.Fatalf("the server did not log %q within 10s", msg)
		}
	}
}

// logSignal is a slog.Handler that sends each message on a channel, for
// waitLog; it drops messages when the channel is full.
type logSignal chan string

func (l logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (l logSignal) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logSignal) WithGroup(string) slog.Handler            { return l }
func (l logSignal) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Message:
	default:
	}
	return nil
}

func readPolicy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dropRule removes the rule called name (its lines, up to the next rule or
// comment) from a policy file.
func dropRule(t *testing.T, file, name string) string {
	t.Helper()
	var out []string
	skip := false
	for line := range strings.Lines(file) {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "- name: "+name:
			skip = true
		case strings.HasPrefix(trimmed, "- name: "), strings.HasPrefix(trimmed, "#"):
			skip = false
		}
		if !skip {
			out = append(out, line)
		}
	}
	if got := strings.Join(out, ""); got != file {
		return got
	}
	t.Fatalf("policy.yaml has no rule %q", name)
	return ""
}

// invoke makes one unary call with a deadline.
func invoke[Req, Resp any](method func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := method(ctx, req)
	return err
}

func wantCode(t *testing.T, what string, want codes.Code, err error) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}
