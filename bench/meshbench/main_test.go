package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain makes the test binary a server when the driver under test
// starts it as one (run starts os.Executable, the test binary here).
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "serve" {
		if err := serveMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRun runs the harness for a few calls on every mode, each server in
// its own process, and checks that every configuration is measured and
// that the always-on server's spans reach the sink.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	configs := "grpc-go/bare,grpc-go/off,grpc-go/unsampled,connect-go/undeclared,connect-go/always-on"
	err := run(context.Background(), []string{"-configs", configs, "-rounds", "2", "-calls", "40", "-warmup", "10", "-c", "4", "-conns", "2", "-latency-calls", "5"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	got := out.String()
	for c := range strings.SplitSeq(configs, ",") {
		for _, want := range []string{"round 1  " + c + " ", "round 2  " + c + " ", "\n" + c + " "} {
			if !strings.Contains(got, want) {
				t.Errorf("output has no %q:\n%s", want, got)
			}
		}
	}
	if strings.Contains(got, "OTLP sink: 0 spans received") {
		t.Errorf("no span reached the sink from connect-go/always-on:\n%s", got)
	}
}

func TestFlagErrors(t *testing.T) {
	testCases := []struct {
		name string
		args []string
		want string
	}{
		{"bad-stack", []string{"-configs", "netty/bare"}, `meshbench: configuration "netty/bare": want grpc-go/MODE or connect-go/MODE`},
		{"bad-mode", []string{"-configs", "grpc-go/fast"}, `meshbench: configuration "grpc-go/fast": mode "fast": want bare, off, unsampled, undeclared or always-on`},
		{"twice", []string{"-configs", "grpc-go/bare,grpc-go/bare"}, `meshbench: configuration grpc-go/bare given twice`},
		{"unbounded-rounds", []string{"-rounds", "0"}, `meshbench: -rounds 0: want 1 to 20`},
		{"too-many-calls", []string{"-calls", "2000000"}, `meshbench: -calls 2000000: want 1 to 1000000`},
		{"arguments", []string{"extra"}, `meshbench: unexpected arguments ["extra"]`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out)
			if err == nil || err.Error() != tc.want {
				t.Errorf("run(%q) = %v, want %s", tc.args, err, tc.want)
			}
		})
	}
}
