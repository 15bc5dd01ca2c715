// Command workloadapi serves counter.v1.CounterService with grpc-go behind
// trustmesh, taking its identity from the SPIFFE Workload API (a SPIRE
// agent), as production services do:
//
//	SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/sockets/agent.sock go run . -listen :8443
//
// Its SVID and trust bundles follow the agent's rotations without a
// restart; every call is authorized by policy.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"

	"github.com/trustmesh/trustmesh/certs"
	counterv1 "github.com/trustmesh/trustmesh/examples/workloadapi/gen/counter/v1"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

// newServer builds the counter service with the SVID and bundles that the
// Workload API at socket hands out. Close the source when done.
func newServer(ctx context.Context, socket, policyFile string, log *slog.Logger) (*mesh.GRPCServer, *certs.WorkloadSource, error) {
	if socket == "" {
		return nil, nil, errors.New(certs.EndpointSocketEnv + " is not set: run under a SPIRE agent, or set it to the Workload API's address (unix:///path/to/agent.sock)")
	}
	file, err := policy.LoadFile(policyFile)
	if err != nil {
		return nil, nil, err
	}
	rules, err := policy.Compile(file)
	if err != nil {
		return nil, nil, err
	}
	authz, err := interceptors.NewAuthorizer(rules, interceptors.WithAuditLogger(log))
	if err != nil {
		return nil, nil, err
	}
	// Blocks until the agent has sent the first SVID (30s at most).
	src, err := certs.NewWorkloadSource(ctx, socket, log)
	if err != nil {
		return nil, nil, err
	}
	srv, err := mesh.NewGRPCServer(mesh.Credentials{SVID: src, Bundles: src}, mesh.WithAuthorizer(authz), mesh.WithLogger(log))
	if err != nil {
		return nil, nil, errors.Join(err, src.Close())
	}
	counterv1.RegisterCounterServiceServer(srv, &counter{})
	return srv, src, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "the address to serve on")
	policyFile := flag.String("policy", "policy.yaml", "the policy file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	srv, src, err := newServer(ctx, os.Getenv(certs.EndpointSocketEnv), *policyFile, log)
	if err == nil {
		// Checks that an allow rule covers every method before it listens.
		err = errors.Join(srv.ListenAndServe(ctx, *listen), src.Close())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workloadapi:", err)
		os.Exit(1)
	}
}

// counter implements counter.v1.CounterService.
type counter struct {
	counterv1.UnimplementedCounterServiceServer
	value atomic.Uint64
}

func (c *counter) Get(context.Context, *counterv1.GetRequest) (*counterv1.GetResponse, error) {
	return &counterv1.GetResponse{Value: c.value.Load()}, nil
}

func (c *counter) Increment(context.Context, *counterv1.IncrementRequest) (*counterv1.IncrementResponse, error) {
	return &counterv1.IncrementResponse{Value: c.value.Add(1)}, nil
}
