package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	testCases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no-command", nil, nil, "shop: no command given"},
		{"unknown-command", nil, []string{"down"}, `shop: unknown command "down" (want up, serve, traces or version; see 'shop help')`},
		{"serve-without-name", nil, []string{"serve"}, "shop: serve: missing service NAME (gateway, orders, inventory or payments)"},
		{"serve-unknown-service", nil, []string{"serve", "billing"}, `shop: serve: unknown service "billing" (want gateway, orders, inventory or payments)`},
		{"bad-addr-flag", nil, []string{"up", "--orders-addr", "nine"}, `shop: --orders-addr "nine": want host:port`},
		{"negative-limit", nil, []string{"up", "--payment-limit", "-1"}, "shop: --payment-limit -1: must not be negative"},
		{"bad-log-level", nil, []string{"up", "--log-level", "loud"}, `shop: --log-level "loud": want debug, info, warn or error`},
		{"bad-env-duration", map[string]string{"SHOP_STEP_INTERVAL": "soon"}, []string{"up"},
			`shop: env SHOP_STEP_INTERVAL="soon" (flag --step-interval, e.g. "0s"): parse error`},
		{"unknown-flag", nil, []string{"up", "--colour"}, "shop: up: flag provided but not defined: -colour"},
		{"negative-rate-limit", nil, []string{"up", "--rate-limit", "-5"}, "shop: --rate-limit -5: must not be negative"},
		{"burst-without-rate", nil, []string{"up", "--rate-burst", "10"}, "shop: --rate-burst 10: must be positive, with a --rate-limit"},
		{"bad-env-rate", map[string]string{"SHOP_RATE_LIMIT": "fast"}, []string{"up"}, `shop: env SHOP_RATE_LIMIT="fast" (flag --rate-limit, e.g. "0"): parse error`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.want) {
				t.Errorf("last stderr line:\n got: %s\nwant: %s...", last, tc.want)
			}
		})
	}
}

func TestServeMissingCertificates(t *testing.T) {
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	code := run(context.Background(), []string{"serve", "inventory", "--cert-dir", dir, "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	want := "shop: inventory: certs: read SVID: open " + dir + "/inventory.pem: no such file or directory"
	if got := stderr.String(); !strings.HasPrefix(got, want) || !strings.Contains(got, "meshctl certs init --dir "+dir) {
		t.Errorf("stderr = %q, want it to start %q and say how to create the certificates", got, want)
	}
}
