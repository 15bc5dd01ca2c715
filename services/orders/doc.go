// Package orders implements shop.orders.v1.OrderService, the order keeper of
// the sample mesh. CreateOrder reserves stock with inventory, charges with
// payments, and compensates (releases the stock) when the charge fails; a
// confirmed order then steps through SHIPPED and DELIVERED on a timer, and
// WatchOrder streams every step.
//
// [Server] holds business logic only; mesh/ and cmd/shop serve it over mTLS
// with grpc-go, with the request rules that the proto declares
// (buf.validate options) enforced before any method runs (see
// services/internal/validation), and give it mTLS clients for inventory and
// payments. Call
// [Server.Close] when shutting down, before the gRPC server's GracefulStop:
// it stops the status timers and ends open WatchOrder streams.
//
// Orders belong to the person they are placed for, as the mesh verified
// them: the subject of the transaction token that the gateway minted for the
// person who called it, which every call to orders carries and the mesh
// verifies before any method runs (txn.FromContext), never a customer ID a
// request names. CreateOrder places the order for the subject; its
// customer_id may be empty or repeat the subject's SPIFFE ID
// ("spiffe://shop.example/user/alice"), and anything else is
// PermissionDenied ("customer_id \"bob\" is not the transaction's subject
// spiffe://shop.example/user/alice: orders are placed for the subject"),
// like the gateway's own check: the request asks for something the
// transaction may not do, it is not malformed. GetOrder and WatchOrder of
// another subject's order are NotFound, exactly like an order that does not
// exist, so that no one learns which order IDs exist. A call without a
// verified subject is Unauthenticated (in the mesh the authorizer refuses
// it first: "transaction token required for ..."). Every log line of a
// CreateOrder carries the subject.
//
// Errors are gRPC statuses. A request that breaks a rule is InvalidArgument
// naming the field and the rule ("validation error: items[0].quantity: must
// be greater than 0"). Inventory's and payments'
// answers about the request keep their code and message (InvalidArgument,
// NotFound, AlreadyExists, FailedPrecondition, OutOfRange), so a short stock
// is FailedPrecondition "insufficient stock for product ..." and a declined
// payment is FailedPrecondition "payment declined: ...". Any other
// downstream failure reaches the caller with a generic message that keeps a
// sensible code and names only the service called: with payments down,
// Unavailable "payments unavailable", never the dial error with its address,
// nor a refused handshake with its SPIFFE IDs (see
// services/internal/downstream for the whole table); the order is then
// CANCELLED with the reason "payment failed: payments unavailable". The
// details go to the log line of the failure ("order rejected: reservation
// failed", "order failed: charge failed"), with the code, the whole error and
// the trace ID; every log line of a CreateOrder carries its trace ID.
//
// Every product and order ID has 1 to [MaxIDBytes] (128) bytes, a customer
// ID at most that many: a longer one is InvalidArgument ("validation error:
// customer_id: must be at most 128 bytes"), refused before any downstream
// call. An ID a caller sent is repeated in an error message cut to 64 bytes
// ("…(N bytes)" marks the cut).
package orders
