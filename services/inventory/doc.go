// Package inventory implements shop.inventory.v1.InventoryService, the stock
// keeper of the sample mesh: an in-memory catalogue whose stock orders reserve
// all or nothing, release when a payment fails, and operators restock.
//
// [Server] holds business logic only; mesh/ and cmd/shop serve it over mTLS,
// with the request rules that the proto declares (buf.validate options)
// enforced before any method runs: see services/internal/validation. Every
// method is safe for concurrent use. Errors are gRPC statuses: a request
// that breaks a rule is InvalidArgument naming the field and the rule
// ("validation error: items[0].quantity: must be greater than 0"),
// NotFound names the unknown product or order, and FailedPrecondition says
// which product is short and by how much.
//
// Every order ID, product ID and product name has 1 to [MaxIDBytes] (128)
// bytes: a longer one in a request is InvalidArgument ("validation error:
// order_id: must be at most 128 bytes"), and in the catalogue an error from
// [New]. An ID a caller sent is repeated in an error message or a log line
// cut to 64 bytes ("…(N bytes)" marks the cut).
package inventory
