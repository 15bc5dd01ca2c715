package mesh_test

import (
	"context"
	"net"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// TestShutdownDoesNotWaitForever: with a stream that never ends open (a
// health Watch), Serve returns once the shutdown timeout has passed after
// its context ends, on both stacks.
func TestShutdownDoesNotWaitForever(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	creds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	client := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}
	opts := []mesh.ServerOption{mesh.WithoutAuthorization(), mesh.WithShutdownTimeout(200 * time.Millisecond)}
	stacks := []struct {
		name  string
		serve func(context.Context, net.Listener) error
		watch func(ctx context.Context, addr string) error // returns once the first status arrived
	}{
		{"grpc-go", func() func(context.Context, net.Listener) error {
			srv, err := mesh.NewGRPCServer(creds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			return srv.Serve
		}(), func(ctx context.Context, addr string) error {
			conn, err := mesh.DialGRPC(addr, client, spiffeid.RequireFromString(serverID))
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = conn.Close() })
			stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}},
		{"connect-go", func() func(context.Context, net.Listener) error {
			srv, err := mesh.NewConnectServer(creds, mesh.WithServerOptions(opts...))
			if err != nil {
				t.Fatal(err)
			}
			return srv.Serve
		}(), func(ctx context.Context, addr string) error {
			hc, err := mesh.NewHTTPClient(client, spiffeid.RequireFromString(serverID))
			if err != nil {
				return err
			}
			c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](hc,
				"https://"+addr+"/grpc.health.v1.Health/Watch", connect.WithGRPC())
			stream, err := c.CallServerStream(ctx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = stream.Close() })
			if !stream.Receive() {
				return stream.Err()
			}
			return nil
		}},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			ln := listen(t)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- st.serve(ctx, ln) }()
			watchCtx, stopWatch := context.WithCancel(context.Background())
			defer stopWatch()
			if err := st.watch(watchCtx, ln.Addr().String()); err != nil {
				t.Fatalf("watch: %v", err)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second): // far above the 200ms timeout: only a hang gets here
				t.Fatal("Serve did not return after its shutdown timeout with a stream open")
			}
		})
	}
}
