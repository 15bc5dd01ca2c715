// Command stacksize links what interceptors builds on and nothing of
// trustmesh: grpc-go, connect-go, go-spiffe's spiffeid and
// go.opentelemetry.io/otel/attribute. BENCHMARKS.md compares it with
// interceptorsize ("A lean core").
package main

import (
	"fmt"

	_ "connectrpc.com/connect"
	_ "github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	_ "google.golang.org/grpc"
)

func main() { fmt.Println(attribute.Key("trustmesh.peer.spiffe_id")) }
