package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/trustmesh/trustmesh/internal/spire"
	"github.com/trustmesh/trustmesh/internal/spire/shopmesh"
	"github.com/trustmesh/trustmesh/services/shop"
)

// spireFlags are `shop up`'s flags for running the mesh on SPIRE.
type spireFlags struct {
	on        bool
	binDir    string
	configDir string
	stateDir  string
}

func registerSPIREFlags(fs *flag.FlagSet) *spireFlags {
	s := &spireFlags{}
	fs.BoolVar(&s.on, "spire", false,
		"take identities from a local SPIRE server and agent started here, each service in its own process (env SHOP_SPIRE)")
	fs.StringVar(&s.binDir, "spire-bin", filepath.Join(".cache", "spire", "bin"),
		"directory with spire-server and spire-agent, built by `make spire`; else $PATH (env SHOP_SPIRE_BIN)")
	fs.StringVar(&s.configDir, "spire-config", filepath.Join("deploy", "spire"),
		"directory with SPIRE's server.conf and agent.conf (env SHOP_SPIRE_CONFIG)")
	fs.StringVar(&s.stateDir, "spire-dir", "",
		"SPIRE's state (datastore, keys, sockets, logs); default: a temporary directory removed on exit (env SHOP_SPIRE_DIR)")
	return s
}

// upSPIRE runs the mesh on SPIRE until ctx ends or a service exits.
func upSPIRE(ctx context.Context, s *spireFlags, fs *flag.FlagSet, cfg shop.Config, stdout io.Writer, stderr io.Writer) (err error) {
	stateDir := s.stateDir
	if stateDir == "" {
		// Short, under /tmp: the agent's socket path must fit a sockaddr_un.
		if stateDir, err = os.MkdirTemp("", "tm-spire-"); err != nil {
			return fmt.Errorf("spire: %w", err)
		}
		defer func() { _ = os.RemoveAll(stateDir) }()
	}
	args := serveArgs(fs)
	var env []string
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		// Four processes would print four halves of each trace: send the
		// spans nowhere unless told (e.g. to `shop traces`).
		env = append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none")
	}
	r, err := shopmesh.Up(ctx, shopmesh.UpConfig{
		SPIRE: spire.Config{BinDir: s.binDir, ConfigDir: s.configDir, StateDir: stateDir, Log: cfg.Log},
		Mesh:  shopmesh.MeshConfig{Addrs: cfg.Addrs, Args: args, Env: env, Output: stderr, Log: cfg.Log},
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	printSPIREWelcome(stdout, r)
	select {
	case <-ctx.Done():
		return nil
	case err := <-r.Mesh.Done():
		return err
	}
}

// serveArgs are the flags set on `shop up` (on the command line or through
// the environment) that every `shop serve` takes too, except the ones the
// SPIRE mode sets itself: the addresses (passed per service) and the
// Workload API socket (SPIFFE_ENDPOINT_SOCKET, pointing at the agent).
func serveArgs(up *flag.FlagSet) []string {
	var c common
	serve := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.register(serve, "")
	skip := map[string]bool{"spiffe-socket": true}
	for _, name := range shop.Services {
		skip[name+"-addr"] = true
	}
	var args []string
	up.Visit(func(f *flag.Flag) {
		if serve.Lookup(f.Name) != nil && !skip[f.Name] {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

// printSPIREWelcome tells a person how to get an identity from the agent
// and call the mesh with it.
func printSPIREWelcome(w io.Writer, r *shopmesh.Running) {
	d := r.UserDir
	tlsFlags := fmt.Sprintf("-cacert %s -cert %s -key %s", filepath.Join(d, "bundle.0.pem"), filepath.Join(d, "svid.0.pem"), filepath.Join(d, "svid.0.key"))
	gw := gatewayHost(r.Mesh.Addrs[shop.Gateway])
	fmt.Fprintf(w, `
trustmesh sample mesh is up on SPIRE (Ctrl-C to stop):
  spire     server log %s, agent log %s
            Workload API %s
  gateway   %s  connect-go  (gRPC, gRPC-Web, Connect)
  orders    %s  grpc-go
  inventory %s  grpc-go
  payments  %s  connect-go

Each service runs from its own binary (%[13]s) and the agent
gives it its SVID by that path (unix:path); SVIDs live two minutes and rotate
about every minute (see "rotated SVID" in the logs).

Get %[12]s's identity (spiffe://shop.example/user/%[12]s, for an hour) from the agent, as this user:

  %[10]s %[11]s

then call the mesh with it (no grpcurl installed? use: go tool -modfile=tools/go.mod grpcurl):

  grpcurl %[8]s %[9]s list
  grpcurl %[8]s %[9]s shop.gateway.v1.StorefrontService/ListProducts
  grpcurl %[8]s -d '{"customer_id":"alice","items":[{"product_id":"sku-apple","quantity":2}]}' %[9]s shop.gateway.v1.StorefrontService/PlaceOrder

`, r.SPIRE.ServerLog(), r.SPIRE.AgentLog(), r.SPIRE.AgentAddr(),
		r.Mesh.Addrs[shop.Gateway], r.Mesh.Addrs[shop.Orders], r.Mesh.Addrs[shop.Inventory], r.Mesh.Addrs[shop.Payments],
		tlsFlags, gw, r.SPIRE.AgentBinary(), strings.Join(spire.FetchArgs(r.SPIRE.AgentSocket(), d), " "), r.User,
		shopmesh.ServiceBinary(r.BinDir, "NAME"))
}
