// Package payments implements shop.payments.v1.PaymentService, the payment
// processor of the sample mesh: it charges orders up to a configurable limit
// and refunds payments, keeping its ledger in memory.
//
// [Server] holds business logic only; mesh/ and cmd/shop serve it over mTLS
// with connect-go, with the request rules that the proto declares
// (buf.validate options) enforced before any method runs (see
// services/internal/validation). Every method is safe for concurrent use.
// Errors are [connect.Error]s: a request that breaks a rule is
// CodeInvalidArgument naming the field and the rule ("validation error:
// amount: units_minor must be positive"), so is an amount in another
// currency than the configured one, a charge
// above the limit is CodeFailedPrecondition ("payment declined: amount
// EUR 1500.00 exceeds limit EUR 1000.00"), and an unknown payment is
// CodeNotFound.
//
// Every order ID and payment ID has 1 to [MaxIDBytes] (128) bytes: a longer
// one is CodeInvalidArgument ("validation error: order_id: must be at most
// 128 bytes"). Anything a caller sent that is repeated in an error message or
// a log line (an ID, a currency code) is cut to 64 bytes ("…(N bytes)" marks
// the cut).
package payments
