package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	counterv1 "github.com/trustmesh/trustmesh/examples/workloadapi/gen/counter/v1"
	"github.com/trustmesh/trustmesh/mesh"
)

var (
	serverID      = spiffeid.RequireFromString("spiffe://example.org/ns/counter/sa/counter")
	frontendID    = spiffeid.RequireFromString("spiffe://example.org/ns/web/sa/frontend")
	incrementerID = spiffeid.RequireFromString("spiffe://example.org/ns/jobs/sa/incrementer")
)

// TestWorkloadAPI serves the counter with an identity from a Workload API
// and calls it, over mutual TLS on 127.0.0.1, as clients whose identities
// come from the Workload API too: one call allowed, one denied each.
func TestWorkloadAPI(t *testing.T) {
	ca, err := certs.NewCA(serverID.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, src, err := newServer(ctx, startWorkloadAPI(t, ca, serverID), "policy.yaml", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	frontend := dial(t, ln.Addr().String(), startWorkloadAPI(t, ca, frontendID))
	incrementer := dial(t, ln.Addr().String(), startWorkloadAPI(t, ca, incrementerID))
	callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer callCancel()

	if resp, err := incrementer.Increment(callCtx, &counterv1.IncrementRequest{}); err != nil || resp.GetValue() != 1 {
		t.Errorf("incrementer Increment = %v, %v; want 1", resp.GetValue(), err)
	}
	if resp, err := frontend.Get(callCtx, &counterv1.GetRequest{}); err != nil || resp.GetValue() != 1 {
		t.Errorf("frontend Get = %v, %v; want 1", resp.GetValue(), err)
	}
	_, err = frontend.Increment(callCtx, &counterv1.IncrementRequest{})
	if got, want := status.Convert(err).Message(), frontendID.String()+" may not call /counter.v1.CounterService/Increment"; status.Code(err) != codes.PermissionDenied || got != want {
		t.Errorf("frontend Increment: %v; want PermissionDenied %q", err, want)
	}
	if _, err := incrementer.Get(callCtx, &counterv1.GetRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("incrementer Get: %v; want PermissionDenied", err)
	}
}

// TestNoSocket proves that the server says what to do when the Workload
// API's address is missing.
func TestNoSocket(t *testing.T) {
	_, _, err := newServer(context.Background(), "", "policy.yaml", slog.New(slog.DiscardHandler))
	want := "SPIFFE_ENDPOINT_SOCKET is not set: run under a SPIRE agent, or set it to the Workload API's address (unix:///path/to/agent.sock)"
	if err == nil || err.Error() != want {
		t.Errorf("newServer: %v, want %s", err, want)
	}
}

// dial returns a counter client whose identity comes from the Workload API
// at socket, as a client workload's would.
func dial(t *testing.T, addr, socket string) counterv1.CounterServiceClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, err := certs.NewWorkloadSource(ctx, socket, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mesh.DialGRPC(addr, mesh.Credentials{SVID: src, Bundles: src}, serverID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		src.Close()
	})
	return counterv1.NewCounterServiceClient(conn)
}

// workloadAPI is the X.509 part of a SPIFFE Workload API, as a SPIRE agent
// serves it to one workload, built from go-spiffe's published proto package.
type workloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	resp *workload.X509SVIDResponse
}

// startWorkloadAPI serves, until the test ends, a Workload API on a Unix
// socket that hands out an SVID for id from ca, and returns its address.
func startWorkloadAPI(t *testing.T, ca *certs.CA, id spiffeid.ID) string {
	t.Helper()
	svid, err := ca.Issue(certs.IssueRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	api := &workloadAPI{resp: &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId:    id.String(),
		X509Svid:    concat(svid.Certificates),
		X509SvidKey: key,
		Bundle:      concat(ca.Bundle().X509Authorities()),
	}}}}
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, api)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return "unix://" + path
}

// FetchX509SVID sends the SVID and keeps the stream open, as an agent does
// until it rotates the SVID.
func (w *workloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	if err := stream.Send(w.resp); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func concat(certs []*x509.Certificate) []byte {
	var raw []byte
	for _, c := range certs {
		raw = append(raw, c.Raw...)
	}
	return raw
}
