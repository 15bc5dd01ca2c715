package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/trustmesh/trustmesh/telemetry/tracetree"
)

const tracesHelp = `Usage: shop traces [flags]

Receives OpenTelemetry traces over OTLP (gRPC and HTTP/protobuf on one port)
and prints each finished trace as a tree on stdout, one line per span:
service, kind, method, caller, authorization decision, duration. Point the
services at it with OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:PORT; set
OTEL_BSP_SCHEDULE_DELAY=200 on them for prompt trees. Metrics sent to it are
accepted and ignored.

The receiver speaks plaintext and authenticates no one: it is a development
tool for loopback or a private compose network. Stop it with Ctrl-C.

Flags:
`

// tracesCmd runs `shop traces`: an OTLP receiver that prints trace trees.
func tracesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("traces", tracesHelp, stderr)
	listen := fs.String("listen", "127.0.0.1:4317", "address to receive OTLP on (env SHOP_TRACES_LISTEN)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("traces: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port: %w", *listen, errUsage)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("traces: listen: %w", err)
	}
	fmt.Fprintf(stderr, "shop traces: receiving OTLP (gRPC and HTTP/protobuf, plaintext) on %s; set OTEL_EXPORTER_OTLP_ENDPOINT=http://%s\n", ln.Addr(), ln.Addr())
	return tracetree.ServeReceiver(ctx, ln, stdout)
}
