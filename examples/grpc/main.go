// Command grpc runs a grpc-go service of its own proto behind trustmesh and
// calls it: mutual TLS with SPIFFE IDs, and every call authorized by rules
// from the proto's trustmesh.v1 access options plus policy.yaml, which is
// reloaded when it changes. `go run .` prints an allowed and a denied call.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	tasksv1 "github.com/trustmesh/trustmesh/examples/grpc/gen/tasks/v1"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

var (
	serverID   = spiffeid.RequireFromString("spiffe://example.org/ns/tasks/sa/tasks")
	frontendID = spiffeid.RequireFromString("spiffe://example.org/ns/web/sa/frontend")
)

// serve runs the task service on ln until ctx ends.
func serve(ctx context.Context, creds mesh.Credentials, policyFile string, ln net.Listener, log *slog.Logger) error {
	// The rules declared in the proto, plus those of the policy file. A bad
	// edit of the file is logged and rejected; the last good policy stays.
	fromProto, err := policy.FromServiceNames("tasks.v1.TaskService")
	if err != nil {
		return err
	}
	rules, err := policy.NewWatcher(ctx, policyFile, policy.WithBase(fromProto), policy.WithLogger(log))
	if err != nil {
		return err
	}
	defer rules.Close()
	authz, err := interceptors.NewAuthorizer(rules, interceptors.WithAuditLogger(log))
	if err != nil {
		return err
	}
	srv, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(authz), mesh.WithLogger(log))
	if err != nil {
		return err
	}
	tasksv1.RegisterTaskServiceServer(srv, &taskService{})
	// Serve first checks that an allow rule covers every method it serves.
	return srv.Serve(ctx, ln)
}

// call calls the task service at addr as the frontend, accepting only a
// server whose SVID carries serverID, and prints what happened.
func call(ctx context.Context, addr string, creds mesh.Credentials, w io.Writer) error {
	conn, err := mesh.DialGRPC(addr, creds, serverID)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := tasksv1.NewTaskServiceClient(conn)

	added, err := client.AddTask(ctx, &tasksv1.AddTaskRequest{Title: "write the docs"})
	fmt.Fprintf(w, "AddTask: count=%d, err=%v\n", added.GetCount(), err)
	_, err = client.PurgeTasks(ctx, &tasksv1.PurgeTasksRequest{})
	fmt.Fprintf(w, "PurgeTasks: %v\n", err)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		os.Exit(1)
	}
}

// run serves on 127.0.0.1 with policy.yaml and calls the service once.
func run(ctx context.Context, w io.Writer, log *slog.Logger) error {
	// A development CA in memory. In production the SVIDs and bundles come
	// from the SPIFFE Workload API: certs.NewWorkloadSource.
	ca, err := certs.NewCA(serverID.TrustDomain())
	if err != nil {
		return err
	}
	serverSVID, err := ca.Issue(certs.IssueRequest{ID: serverID})
	if err != nil {
		return err
	}
	frontendSVID, err := ca.Issue(certs.IssueRequest{ID: frontendID})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, mesh.Credentials{SVID: serverSVID, Bundles: ca.Bundle()}, "policy.yaml", ln, log)
	}()
	err = call(ctx, ln.Addr().String(), mesh.Credentials{SVID: frontendSVID, Bundles: ca.Bundle()}, w)
	cancel()
	return errors.Join(err, <-served)
}

// taskService implements tasks.v1.TaskService: a list in memory.
type taskService struct {
	tasksv1.UnimplementedTaskServiceServer
	mu     sync.Mutex
	titles []string
}

func (s *taskService) AddTask(_ context.Context, req *tasksv1.AddTaskRequest) (*tasksv1.AddTaskResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(req.GetTitle()) > 100 || len(s.titles) == 100 {
		return nil, status.Error(codes.InvalidArgument, "at most 100 tasks of at most 100 bytes")
	}
	s.titles = append(s.titles, req.GetTitle())
	return &tasksv1.AddTaskResponse{Count: int32(len(s.titles))}, nil
}

func (s *taskService) ListTasks(context.Context, *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &tasksv1.ListTasksResponse{Titles: append([]string(nil), s.titles...)}, nil
}

func (s *taskService) PurgeTasks(context.Context, *tasksv1.PurgeTasksRequest) (*tasksv1.PurgeTasksResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := len(s.titles)
	s.titles = nil
	return &tasksv1.PurgeTasksResponse{Removed: int32(removed)}, nil
}
