// Package identity turns a verified peer certificate into a [Principal]: the
// caller's SPIFFE ID and the leaf it was read from.
//
// The rules are the X.509-SVID rules, applied strictly: the leaf carries
// exactly one URI SAN, with the spiffe scheme, a valid trust domain and a
// non-empty path, written in the certificate exactly in its canonical form
// (not "SPIFFE://td/x", not "spiffe://td/x#"); it is not a CA and carries
// the digitalSignature key usage; it chains to the trust bundle of its own
// trust domain; it is within its validity period; and it names the
// extended key usage of its role explicitly (clientAuth for callers,
// serverAuth for servers; anyExtendedKeyUsage, or no extended key usage,
// is not enough), which every CA certificate of the chain permits. There is
// no fallback to DNS SANs or to the Subject.
//
// [Verify] applies the rules once per TLS handshake (the mesh package calls it
// from tls.Config.VerifyConnection, which runs on resumed sessions too);
// [VerifyChains] also returns the chains it verified, for a
// tlsconfig.Authorizer.
// The mesh's interceptors carry the result to handlers, and [FromContext] reads it, whichever
// stack (grpc-go or connect-go) served the call.
package identity
