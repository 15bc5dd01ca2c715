package main

import (
	"strings"
	"testing"
)

func TestPolicyTest(t *testing.T) {
	t.Parallel()
	file := writePolicy(t, "policy.yaml", samplePolicy+`  - name: at-gateway-reflection
    effect: allow
    from: ["spiffe://shop.example/user/*"]
    to: ["/grpc.reflection.v1.ServerReflection/*"]
    at: ["spiffe://shop.example/ns/shop/sa/gateway"]
  - name: token-refunds
    effect: allow
    from: ["spiffe://shop.example/ns/ops/sa/teller"]
    to: ["/shop.payments.v1.PaymentService/Refund"]
    require_token: true
`)
	t.Run("passing", func(t *testing.T) {
		t.Parallel()
		cases := writePolicy(t, "cases.yaml", `version: 1
cases:
  - name: alice uses the storefront
    caller: spiffe://shop.example/user/alice
    method: /shop.gateway.v1.StorefrontService/PlaceOrder
    want: allow
    rule: users-gateway
  - name: mallory is denied
    caller: spiffe://shop.example/user/mallory
    method: /shop.gateway.v1.StorefrontService/PlaceOrder
    want: deny
    rule: no-mallory
  - name: reflection only at the gateway
    caller: spiffe://shop.example/user/alice
    method: /grpc.reflection.v1.ServerReflection/ServerReflectionInfo
    server: spiffe://shop.example/ns/shop/sa/gateway
    want: allow
  - name: no reflection elsewhere
    caller: spiffe://shop.example/user/alice
    method: /grpc.reflection.v1.ServerReflection/ServerReflectionInfo
    server: spiffe://shop.example/ns/shop/sa/orders
    want: deny
    rule: default-deny
  - name: teller without token
    caller: spiffe://shop.example/ns/ops/sa/teller
    method: /shop.payments.v1.PaymentService/Refund
    want: unauthenticated
  - name: teller with token
    caller: spiffe://shop.example/ns/ops/sa/teller
    method: /shop.payments.v1.PaymentService/Refund
    token: true
    want: allow
`)
		if out := mustRun(t, "policy", "test", file, cases); out != "6 cases, 0 failed\n" {
			t.Errorf("stdout = %q", out)
		}
	})
	t.Run("failing", func(t *testing.T) {
		t.Parallel()
		cases := writePolicy(t, "cases.yaml", `version: 1
cases:
  - name: alice may refund
    caller: spiffe://shop.example/user/alice
    method: /shop.payments.v1.PaymentService/Refund
    want: allow
  - name: wrong rule
    caller: spiffe://shop.example/user/alice
    method: /shop.gateway.v1.StorefrontService/PlaceOrder
    want: allow
    rule: admin-refund
`)
		r := runMeshctl(t, "policy", "test", file, cases)
		want := cases + ":3: case alice may refund: got deny by rule default-deny, want allow\n" +
			cases + ":7: case wrong rule: got allow by rule users-gateway, want allow by rule admin-refund\n" +
			"2 cases, 2 failed\n"
		if r.code != 1 || r.stdout != want || r.stderr != "meshctl: 2 of 2 policy cases failed\n" {
			t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
		}
	})
	for name, tc := range map[string]struct{ cases, want string }{
		"unknown field": {"version: 1\ncases:\n  - name: x\n    calller: spiffe://shop.example/a\n", ":4: unknown field \"calller\""},
		"bad want":      {"version: 1\ncases:\n  - name: x\n    caller: spiffe://shop.example/a\n    method: /a.B/C\n    want: maybe\n", ":3: case x: want \"maybe\": want one of allow, deny, dry_run_deny, unauthenticated"},
		"bad caller":    {"version: 1\ncases:\n  - name: x\n    caller: spiffe://Shop.example/a\n    method: /a.B/C\n    want: allow\n", ":3: case x: caller \"spiffe://Shop.example/a\""},
		"no version":    {"cases: []\n", ":1: missing version"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cases := writePolicy(t, "cases.yaml", tc.cases)
			r := runMeshctl(t, "policy", "test", file, cases)
			if r.code != 1 || !strings.Contains(r.stderr, cases+tc.want) {
				t.Errorf("exit %d, stderr %q; want it to hold %q", r.code, r.stderr, cases+tc.want)
			}
		})
	}
}
