// Package policy decides who may call which method: rules that name callers
// by SPIFFE ID pattern and methods by gRPC full method name, compiled once
// into an [Engine] whose [Engine.Decide] allocates nothing.
//
// Evaluation: any matching deny rule wins; otherwise any matching allow rule
// allows; otherwise the call is denied (default deny). The [Decision] names
// the rule that decided. A deny rule (or a whole policy) may be in dry-run:
// its denials are reported as [DryRunDenied] and the call proceeds.
//
// An allow rule may also require a certificate-bound access token
// ([Rule.RequireToken], require_token in a file): the decision then says so
// ([Decision.RequireToken]) and the adapters let the call through only with
// a valid token bound to the caller's certificate. Like a deny, a token
// requirement wins over a broader allow rule that matches the same call.
//
// Caller patterns match whole path segments only:
//
//	spiffe://shop.example/ns/shop/sa/orders   exactly this ID
//	spiffe://shop.example/user/*              one segment in place of *
//	spiffe://shop.example/ns/shop/**          one or more trailing segments
//	spiffe://shop.example                     any ID in the trust domain
//
// Method patterns are "/pkg.Service/Method", "/pkg.Service/*" or "*".
package policy
