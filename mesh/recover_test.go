package mesh_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
)

// TestPanicsAreContained: a panic in a handler (here, in an interceptor in
// front of it) returns Internal "internal error" to the client, logs the
// panic with the caller and method for the operator, and the server keeps
// serving.
func TestPanicsAreContained(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	creds := mesh.Credentials{SVID: pki.SVID(t, serverID), Bundles: pki.Bundle()}
	client := mesh.Credentials{SVID: pki.SVID(t, clientID), Bundles: pki.Bundle()}
	boom := func() { panic("boom: secret detail") }
	grpcPanic := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		boom()
		return h(ctx, req)
	}
	connectPanic := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			boom()
			return next(ctx, req)
		}
	})
	stacks := []struct {
		name  string
		start func(log *slog.Logger) string
		check func(*testing.T, string, mesh.Credentials, string) error
		code  func(error) codes.Code
		msg   func(error) string
	}{
		{"grpc-go", func(log *slog.Logger) string {
			srv, err := mesh.NewGRPCServer(creds, mesh.WithoutAuthorization(), mesh.WithLogger(log),
				mesh.WithGRPCInterceptors([]grpc.UnaryServerInterceptor{grpcPanic}, nil))
			if err != nil {
				t.Fatal(err)
			}
			return serve(t, srv.Serve)
		}, grpcCheck, status.Code, func(err error) string { return status.Convert(err).Message() }},
		{"connect-go", func(log *slog.Logger) string {
			srv, err := mesh.NewConnectServer(creds, mesh.WithoutAuthorization(), mesh.WithLogger(log),
				mesh.WithConnectHandlerOptions(connect.WithInterceptors(connectPanic)))
			if err != nil {
				t.Fatal(err)
			}
			return serve(t, srv.Serve)
		}, connectCheck, func(err error) codes.Code { return codes.Code(connect.CodeOf(err)) },
			func(err error) string {
				if ce := new(connect.Error); errors.As(err, &ce) {
					return ce.Message()
				}
				return err.Error()
			}},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			var logs testsync.Buffer
			addr := st.start(slog.New(slog.NewTextHandler(&logs, nil)))
			for range 2 { // the second call shows the server survived the first
				err := st.check(t, addr, client, serverID)
				if st.code(err) != codes.Internal || st.msg(err) != "internal error" {
					t.Fatalf("call: %v, want Internal \"internal error\"", err)
				}
			}
			log := logs.String()
			for _, want := range []string{"mesh: recovered a panic in a handler", "method=/grpc.health.v1.Health/Check",
				"caller=" + clientID, `panic="boom: secret detail"`} {
				if !strings.Contains(log, want) {
					t.Errorf("server log lacks %q:\n%s", want, log)
				}
			}
		})
	}
}
