// Package interceptors holds the interceptors every trustmesh server runs, in
// a grpc-go form and a connect-go form with the same behaviour.
//
// Identity comes first. On grpc-go, [UnaryServerIdentity] and
// [StreamServerIdentity] read the Principal that the mesh's transport
// credentials attached to the connection at the handshake. On connect-go,
// whose interceptors cannot see TLS state, the mesh package's HTTP layer
// puts the peer verified at the connection's handshake in each request's
// context, and [Authorizer.HTTPHandler] and [RateLimiter.HTTPHandler] run
// in front of every handler. Only the mesh can attach a verified peer:
// behind any other server these refuse every call.
//
// A call that reaches these interceptors without a verified peer is refused
// with Unauthenticated: nothing downstream runs without a Principal.
//
// When the policy rule that allows a call requires an access token
// ([policy.Rule.RequireToken]), the [Authorizer] also checks the call's
// "authorization: Bearer TOKEN" header with its [TokenVerifier]: the token
// must be valid and bound to the certificate the caller presented on this
// connection (RFC 8705), or the call is refused with Unauthenticated
// ("token required for /pkg.Service/Method", "invalid token: ...").
package interceptors
