// Package orders implements shop.orders.v1.OrderService, the order keeper of
// the sample mesh. CreateOrder reserves stock with inventory, charges with
// payments, and compensates (releases the stock) when the charge fails; a
// confirmed order then steps through SHIPPED and DELIVERED on a timer, and
// WatchOrder streams every step.
//
// [Server] holds business logic only; mesh/ and cmd/shop serve it over mTLS
// with grpc-go and give it mTLS clients for inventory and payments. Call
// [Server.Close] when shutting down, before the gRPC server's GracefulStop:
// it stops the status timers and ends open WatchOrder streams.
//
// Errors are gRPC statuses. InvalidArgument names the offending field
// ("items[0].quantity: must be positive, got 0"). Errors from inventory and
// payments keep their code and message, so a short stock is
// FailedPrecondition "insufficient stock for product ..." and a declined
// payment is FailedPrecondition "payment declined: ...".
//
// Every customer, product and order ID has 1 to [MaxIDBytes] (128) bytes: a
// longer one is InvalidArgument ("customer_id: must be at most 128 bytes,
// got 1048576"), refused before any downstream call. An ID a caller sent is
// repeated in an error message cut to 64 bytes ("…(N bytes)" marks the
// cut).
package orders
