// Package authn carries a verified peer from the TLS handshake to the
// interceptors, in forms that only this module can create: the gRPC
// AuthInfo of a mesh connection, the per-connection slot of a mesh HTTP
// server, and the context key behind identity.FromContext.
//
// It is internal so that no code outside trustmesh can turn a certificate
// nobody verified into an identity.Principal: a Principal reaches a
// handler only through the mesh's transport credentials or the mesh's
// HTTP server, both of which verify the peer's chain as an X.509-SVID at
// the handshake.
package authn
