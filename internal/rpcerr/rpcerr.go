// Package rpcerr answers an error to a connect-go, gRPC or gRPC-Web request
// from plain net/http code, in the protocol the client speaks, for the
// layers that run in front of connect-go's handlers (identity, rate limit,
// authorization).
package rpcerr

import (
	"net/http"

	"connectrpc.com/connect"
)

var writer = connect.NewErrorWriter()

// Write answers err in the protocol of r, so grpcurl, gRPC-Web and Connect
// clients all see a proper status; a request that is no RPC gets the HTTP
// status that matches the code, with the message as its body.
func Write(w http.ResponseWriter, r *http.Request, err *connect.Error) {
	if !writer.IsSupported(r) {
		http.Error(w, err.Message(), httpStatus(err.Code()))
		return
	}
	_ = writer.Write(w, r, err)
}

// httpStatus is the HTTP status of a refusal outside any RPC protocol.
func httpStatus(c connect.Code) int {
	switch c {
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnimplemented:
		return http.StatusNotFound
	default:
		return http.StatusInternalServerError
	}
}
