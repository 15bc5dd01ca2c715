// Command interceptorsize is the smallest program that imports the
// interceptors package: it prints one span attribute key. BENCHMARKS.md
// records its size ("A lean core").
package main

import (
	"fmt"

	_ "github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/telemetry"
)

func main() { fmt.Println(telemetry.PeerSPIFFEIDKey) }
