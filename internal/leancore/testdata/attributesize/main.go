// Command attributesize prints the same attribute key as interceptorsize
// with nothing but go.opentelemetry.io/otel/attribute: the floor that
// BENCHMARKS.md compares interceptorsize with.
package main

import (
	"fmt"

	"go.opentelemetry.io/otel/attribute"
)

func main() { fmt.Println(attribute.Key("trustmesh.peer.spiffe_id")) }
