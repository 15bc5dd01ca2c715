// Package gateway implements shop.gateway.v1.StorefrontService, the public
// front door of the sample mesh: it forwards what people send to inventory
// and orders, and translates their answers into the storefront's own
// messages.
//
// [V2Server] (from [NewV2]) implements shop.gateway.v2.StorefrontService on
// top of a [Server]: the same API except that ListProducts returns the
// catalogue in pages. Both versions are served side by side, and the policy
// decides which callers may use which version.
//
// [Server] holds business logic only; mesh/ and cmd/shop serve it with
// connect-go over mTLS, with the request rules that the protos declare
// (buf.validate options) enforced before any method runs (see
// services/internal/validation), and give it mTLS clients for orders and
// inventory. The caller's context (and so its deadline) is passed to every
// downstream call. ListProducts and GetOrder have no side effects
// (idempotency_level NO_SIDE_EFFECTS), so Connect clients may call them
// with HTTP GET, authorized and rate-limited like any other call.
//
// Errors are [connect.Error]s. A request that breaks a rule is
// CodeInvalidArgument naming the field and the rule ("validation error:
// items[0].quantity: must be greater than 0"), and so is more than the
// configured most items per order. A downstream's answer about the request keeps its code and
// message (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
// OutOfRange), so a short stock stays FailedPrecondition "insufficient stock
// for product ...". Any other downstream failure reaches the caller with a
// generic message that keeps a sensible code and names only the service
// called: with orders down, Unavailable "orders unavailable", never the dial
// error with its address, nor a refused handshake with its SPIFFE IDs (see
// services/internal/downstream for the whole table). The details go to the
// gateway's log, one "downstream call failed" line with the call, the code,
// the whole error and the trace ID.
//
// Every customer, product and order ID has at most [MaxIDBytes] (128) bytes
// (customer_id may be empty, the others may not): a longer one is
// CodeInvalidArgument ("validation error: customer_id: must be at most 128
// bytes"), refused before any downstream call, and so is a v2 page token
// longer than any ListProducts returns. An ID a caller sent is repeated in
// an error message cut to 64 bytes ("…(N bytes)" marks the cut).
package gateway
