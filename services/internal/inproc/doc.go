// Package inproc adapts the sample mesh's grpc-go server implementations to
// their generated client interfaces by calling them directly, in process, so
// that unit tests can wire the real services together without a network.
// There is no transport, no TLS and no interceptor in between: the
// end-to-end tests over mTLS live with mesh/ and cmd/shop.
//
// Connect handlers need no adapter: a generated connect Handler interface has
// the same methods as its Client interface, so for example a
// *payments.Server is a paymentsv1connect.PaymentServiceClient already.
package inproc
