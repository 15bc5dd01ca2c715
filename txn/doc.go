// Package txn mints and verifies transaction tokens
// (draft-ietf-oauth-transaction-tokens, revision 10): short-lived signed
// JWTs that say who a transaction is for, minted when a call enters the
// trust domain and passed unchanged along the call chain, so that a
// service deep in the chain can verify the subject for itself rather than
// take its caller's word for it. Only the direct peer is authenticated by
// mutual TLS; the token authenticates the subject.
//
// # Trust without a new key
//
// There is no token service and no token key to distribute: the draft's
// Transaction Token Service is the edge workload itself (the draft lets a
// token be "obtained through a local interface"), and it mints with its
// own X.509-SVID: it signs with the SVID's private key (ES256 for ECDSA
// P-256, EdDSA for Ed25519, RS256 for RSA, chosen by the key; nothing
// else) and carries the SVID's certificate chain in the x5c header. A
// verifier checks that chain against the SPIFFE trust bundle it already
// has, under the same X.509-SVID rules as a peer's certificate
// ([identity.VerifyChains] with the role [identity.Client]: a minter's
// token goes out on the calls it makes as a client, and workload SVIDs
// carry clientAuth; VerifyChains rather than Verify because the verified
// chain bounds how long the token may stay cached), and then checks that
// the signer is one of the workloads allowed to mint (policy names them,
// e.g. txn_issuers). SVID rotation needs nothing: the minter reads its
// SVID on every Mint, the verifier trusts whatever chains to the bundle.
//
// The chain is verified as of the time of verification, not the token's
// iat, which is only the signer's word: a key whose certificate has since
// expired or left the bundle cannot sign for today's transactions. A
// minter never gives a token an exp past its own SVID's expiry.
//
// # The token
//
// Header: typ "txntoken+jwt" ([TokenType]), alg, kid (the RFC 7638
// thumbprint of the signing key) and x5c. Claims:
//
//	iss, req_wl  the minting workload's SPIFFE ID (both required to be the x5c leaf's)
//	sub          who the transaction is for, a SPIFFE ID (see below)
//	aud          the trust domain, as a SPIFFE ID: "spiffe://shop.example"
//	iat, exp     whole seconds; exp is iat plus the lifetime (60 s by
//	             default, at most 10 minutes), never past the call's
//	             deadline
//	txn          the transaction id: the trace id when the edge traces the
//	             call, else 128 random bits in hexadecimal
//	scope        the purpose of the transaction (required since revision
//	             10 of the draft): by default the method
//	tctx         {"method": "/pkg.Service/Method"}, the method the
//	             transaction entered by
//	rctx         {"req_ip": "..."}, only when the edge passes the
//	             caller's address
//
// The subject is a SPIFFE ID, never a free-form string: the edge caller's
// ID, or the sub of the certificate-bound access token it presented (which
// the tokens package requires to be the caller's SPIFFE ID). Policy then
// matches subjects with the same patterns as callers. An edge that takes
// its users from elsewhere maps them to SPIFFE IDs itself (e.g.
// spiffe://TD/user/NAME) and says so.
//
// # Verification
//
// [Verifier.Verify] refuses every token that is not exactly right, with
// one error whose sentinel (errors.Is) says why: [ErrTooLarge] (over
// [MaxSize], 8 KiB, checked before parsing), [ErrMalformed], [ErrType],
// [ErrAlgorithm] ("none" and HMACs never pass), [ErrUntrusted],
// [ErrSignature], [ErrNotMinter], [ErrAudience], [ErrExpired],
// [ErrNotYetValid] and [ErrLifetime]. Every message starts with "txn: ",
// fits on one line, and quotes at most a bounded part of what the token
// says. Times are compared with 5 s of leeway by default ([WithLeeway]).
//
// Verified tokens are cached by their compact form until they expire
// ([WithCacheSize], 10,000 by default), so that every hop after the first
// costs a map look-up; a cached token is refused
// once it expires, once its signer is no longer a minter, and verified
// again when the bundle changes. The signer of each JOSE header is cached
// too: every token one SVID mints has the same header (typ, alg, x5c), so
// a new transaction's token costs its signature and claims, not its x5c
// chain, for as long as the chain holds and the bundle is the one it was
// verified against. WithCacheSize(0) turns both off.
//
// # Propagation
//
// A token travels in the "txn-token" gRPC metadata key ([MetadataKey]),
// which is the "Txn-Token" HTTP header ([HeaderName]) on the wire, and never
// in Authorization, which stays free for access tokens. A server reads it
// with [FromHeader], verifies it and puts it in the call's context with
// [NewContext]; handlers read it with [FromContext]; mesh clients forward
// [RawFromContext] unchanged on every call made in that context. Nothing
// but the edge mints, and nothing widens a token: a workload can only
// forward what it received.
//
// A token is a bearer credential for its short life and must never be
// logged whole: a [Token] prints and logs as its subject, txn, minter and
// method; [Token.Digest] correlates log lines.
package txn
