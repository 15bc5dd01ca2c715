// Command meshctl manages trustmesh development material: a development CA
// and the X.509-SVIDs of the sample mesh (certs init / issue / inspect), and
// a development issuer of certificate-bound access tokens (tokens init /
// issue).
//
// Run `meshctl help` for usage.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
