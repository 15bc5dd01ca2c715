package mesh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// goroutineID is the number runtime.Stack prints for the calling
// goroutine ("goroutine 42 [running]:"). Goroutine numbers are never
// reused within a process.
func goroutineID() string {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _, _ := bytes.Cut(b, []byte(" "))
	return string(id)
}

// TestCallsReuseStreamWorkers checks that a GRPCServer serves calls on
// goroutines it keeps (grpc.NumStreamWorkers), whose stacks need not grow
// again on every call, that WithStreamWorkers sets how many (0: none), and
// that a raw option still wins, as documented.
func TestCallsReuseStreamWorkers(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	workers := int(mesh.DefaultStreamWorkers())
	calls := 2 * workers // more calls than workers, whatever GOMAXPROCS
	for _, tc := range []struct {
		name string
		opts []mesh.GRPCServerOption
		max  int // distinct goroutines the calls may run on
		min  int
	}{
		{"default", nil, workers, 1},
		{"WithStreamWorkers(0)", []mesh.GRPCServerOption{mesh.WithStreamWorkers(0)}, calls, calls},
		{"WithStreamWorkers(2)", []mesh.GRPCServerOption{mesh.WithStreamWorkers(2)}, 2, 1},
		{"raw NumStreamWorkers(0) wins", []mesh.GRPCServerOption{mesh.WithStreamWorkers(2), mesh.WithGRPCServerOptions(grpc.NumStreamWorkers(0))}, calls, calls},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			ids := map[string]bool{}
			record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				mu.Lock()
				ids[goroutineID()] = true
				mu.Unlock()
				return h(ctx, req)
			}
			opts := append([]mesh.GRPCServerOption{mesh.WithoutAuthorization(),
				mesh.WithGRPCInterceptors([]grpc.UnaryServerInterceptor{record}, nil)}, tc.opts...)
			srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			addr := serve(t, srv.Serve)
			conn, err := mesh.DialGRPC(addr, mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(serverID))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range calls { // one at a time: each finds an idle worker
				if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(ids) < tc.min || len(ids) > tc.max {
				t.Errorf("%d calls ran on %d goroutines, want %d to %d", calls, len(ids), tc.min, tc.max)
			}
		})
	}
}

// TestGRPCServerServesOnce: the serving grpc.Server (and its workers) is
// made by Serve and stopped whenever Serve returns, so a second Serve has
// nothing to serve with and says so, rather than serving a stopped
// server. A server built and never served starts no goroutine (TestMain's
// goleak check covers the tests that never serve theirs).
func TestGRPCServerServesOnce(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Serve(ctx, listen(t)); err != nil {
		t.Fatalf("first Serve: %v", err)
	}
	ln := listen(t)
	err = srv.Serve(context.Background(), ln)
	const want = "mesh: GRPCServer.Serve called twice: a GRPCServer serves once (build another)"
	if err == nil || err.Error() != want {
		t.Fatalf("second Serve = %v, want %s", err, want)
	}
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Second)) // fail, not hang, if it is open
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after the second Serve: %v, want the listener closed", err)
	}
	// A registration after Serve would be served by no one's checks.
	defer func() {
		const want = `mesh: GRPCServer.RegisterService("grpc.health.v1.Health") after Serve: register every service before Serve`
		if p := recover(); p != want {
			t.Errorf("RegisterService after Serve: panic %v, want %s", p, want)
		}
	}()
	healthpb.RegisterHealthServer(srv, nil)
}

// TestStreamWorkersBounded: a worker count out of range is an error naming
// the range (a new user's NumStreamWorkers(1e6) took 2.6 GiB in
// NewGRPCServer, 1<<30 never returned), and a raw grpc.NumStreamWorkers
// starts no goroutine before Serve: NewGRPCServer's own grpc.Server, which
// checks the options and keeps the registrations, runs no workers.
func TestStreamWorkersBounded(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	creds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	for _, n := range []int{-1, mesh.MaxStreamWorkers + 1, 1_000_000} {
		_, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithStreamWorkers(n))
		if want := fmt.Sprintf("mesh: WithStreamWorkers(%d): want 0 (a goroutine per call) to 4096", n); err == nil || err.Error() != want {
			t.Errorf("WithStreamWorkers(%d): %v, want %s", n, err, want)
		}
	}
	if _, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithStreamWorkers(mesh.MaxStreamWorkers)); err != nil {
		t.Errorf("WithStreamWorkers(MaxStreamWorkers): %v", err)
	}
	const raw = 20_000
	before := goroutinesCreated()
	if _, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithGRPCServerOptions(grpc.NumStreamWorkers(raw))); err != nil {
		t.Fatal(err)
	}
	// Other tests run in parallel: a margin far below raw.
	if created := goroutinesCreated() - before; created > raw/10 {
		t.Errorf("NewGRPCServer with raw NumStreamWorkers(%d) started %d goroutines", raw, created)
	}
}

// goroutinesCreated is how many goroutines the process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
