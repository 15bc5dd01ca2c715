package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRun proves that the bare program does what the example does: it
// prints the example's lines, so the sizes compared are of like programs.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i, p := range []string{"Connect", "gRPC", "gRPC-Web"} {
		want.WriteString(p + ": AddQuote: count=" + string(rune('1'+i)) + "\n")
		want.WriteString(p + ": GetQuote: permission_denied: spiffe://example.org/user/alice may not call /quotes.v1.QuoteService/GetQuote\n")
	}
	if out.String() != want.String() {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want.String())
	}
}
