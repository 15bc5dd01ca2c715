package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/services/shop"
)

const healthcheckHelp = `Usage: shop healthcheck --addr HOST:PORT --name NAME [flags]

Asks the server at --addr for its grpc.health.v1 status over mutual TLS,
presenting the SVID NAME.pem / NAME-key.pem from --cert-dir (or, when
SPIFFE_ENDPOINT_SOCKET is set, the SVID of NAME from the SPIFFE Workload
API, as under SPIRE on Kubernetes) and accepting
the server only if its SVID carries the SPIFFE ID of --server (by default
NAME: a service checking its own health, as a container health check does;
the policy lets each workload check its own health). Exits 0 only when the
status is SERVING, 1 otherwise, with one line saying why. Needs no shell:
it is the image's HEALTHCHECK.

Flags:
`

// healthcheck runs `shop healthcheck`.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", healthcheckHelp, stderr)
	addr := fs.String("addr", "", "host:port of the server to check (env SHOP_HEALTHCHECK_ADDR)")
	name := fs.String("name", "", "identity to present: the SVID NAME.pem in --cert-dir, e.g. the service's own (env SHOP_HEALTHCHECK_NAME)")
	server := fs.String("server", "", "sample service expected at --addr (its SPIFFE ID is checked); default: --name (env SHOP_HEALTHCHECK_SERVER)")
	certDir := fs.String("cert-dir", filepath.Join("certs", "dev"), "directory with bundle.pem and NAME.pem / NAME-key.pem (env SHOP_CERT_DIR)")
	service := fs.String("service", "", `grpc.health.v1 service name to ask about; "" is the whole server (env SHOP_HEALTHCHECK_SERVICE)`)
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long (env SHOP_HEALTHCHECK_TIMEOUT)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if *addr == "" {
		return fmt.Errorf("healthcheck: --addr is required: %w", errUsage)
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return fmt.Errorf("--addr %q: want host:port: %w", *addr, errUsage)
	}
	if *name == "" {
		return fmt.Errorf("healthcheck: --name is required: %w", errUsage)
	}
	if *timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive: %w", *timeout, errUsage)
	}
	if *server == "" {
		*server = *name
	}
	if _, ok := shop.DefaultAddrs[*server]; !ok {
		return fmt.Errorf("healthcheck: unknown server %q (want gateway, orders, inventory or payments; set --server when --name is not one): %w", *server, errUsage)
	}

	var creds mesh.Credentials
	if socket := os.Getenv(certs.EndpointSocketEnv); socket != "" {
		// Under SPIRE (Kubernetes): the SVID comes from the Workload API.
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		c, closeCreds, err := shop.OpenCredentials(wctx, shop.Config{SPIFFESocket: socket}, *name)
		if err != nil {
			return err
		}
		defer func() { _ = closeCreds() }()
		creds = c
	} else {
		c, err := shop.LoadCredentials(*certDir, *name)
		if err != nil {
			return err // "shop: NAME: load SVID FILE: ... (create it with ...)"
		}
		creds = c
	}
	conn, err := mesh.DialGRPC(*addr, creds, shop.WorkloadID(*server))
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: *service})
	if err != nil {
		return fmt.Errorf("healthcheck: %s at %s: %w", *server, *addr, err)
	}
	if st := res.GetStatus(); st != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("healthcheck: %s at %s: status %s", *server, *addr, st)
	}
	fmt.Fprintf(stdout, "%s at %s: SERVING\n", *server, *addr)
	return nil
}
