package txn

import "github.com/go-jose/go-jose/v4/jwt"

// claims is the JSON body of a transaction token (draft section "JWT Body
// Claims") as go-jose encodes and decodes it. Claims the package does not
// know are ignored, as the draft requires.
type claims struct {
	jwt.Claims // iss, sub, aud, exp, nbf, iat (and jti, unused)

	// Txn is the unique transaction identifier (RFC 8417, 2.2). Required.
	Txn string `json:"txn,omitempty"`
	// Scope is the purpose of the transaction. Required.
	Scope string `json:"scope,omitempty"`
	// RequestingWorkload identifies the workload that requested (here:
	// minted) the token. Required; a string, never an array.
	RequestingWorkload string `json:"req_wl,omitempty"`
	// TransactionContext holds what stays the same along the call chain.
	TransactionContext *transactionContext `json:"tctx,omitempty"`
	// RequestContext describes the request that started the transaction.
	RequestContext *requestContext `json:"rctx,omitempty"`
}

// transactionContext is the tctx claim as far as trustmesh reads it.
type transactionContext struct {
	// Method is the RPC the transaction entered the trust domain by,
	// "/package.Service/Method".
	Method string `json:"method,omitempty"`
}

// requestContext is the rctx claim as far as trustmesh reads it.
type requestContext struct {
	// ReqIP is the IP address of the edge's caller.
	ReqIP string `json:"req_ip,omitempty"`
}
