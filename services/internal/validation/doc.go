// Package validation enforces the request rules that the sample mesh's
// protos declare with protovalidate (buf.validate options: IDs and names
// of 1 to 128 bytes, positive quantities and amounts, ISO 4217 currency
// codes, at least one item and each product at most once), on both stacks:
//
//	grpc-go     mesh.NewGRPCServer(creds, ..., validation.GRPC())
//	connect-go  mesh.NewConnectServer(creds, ..., validation.Connect())
//
// [GRPC] adds go-grpc-middleware's protovalidate interceptors and [Connect]
// connectrpc.com/validate's interceptor to a mesh server. They run after
// the mesh has authorized the call (a denied caller never has its request
// validated, nor decoded) and before the handler, for unary calls and for
// every message a stream receives. Each service validates what it
// receives, whoever sent it: it trusts nothing upstream.
//
// A request that breaks a rule is refused with InvalidArgument, its message
// protovalidate's ("validation error: order_id: must be at most 128
// bytes"), and one buf.validate.Violations error detail that holds
// the field path, the rule path and the rule ID (string.max_bytes).
// Validation stops at the first violation, so that the message stays a
// short line whatever the request holds: protovalidate's messages name the
// field and the rule, never the field's value, so a 1 MB ID gets the same
// short message as a 129-byte one. (The field path of a map entry would
// hold its key; the sample's requests have no maps.)
//
// Rules that protovalidate cannot express stay in the handlers: that an
// order belongs to its caller, that a currency is the one the payment
// processor charges, a limit the server is configured with.
package validation
