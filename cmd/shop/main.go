// Command shop runs the trustmesh sample mesh: `shop up` runs every service
// on loopback in one process; `shop serve NAME` runs one service (what
// compose runs). Run `shop help` for the flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
