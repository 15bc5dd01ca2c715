// Package input bounds what callers of the sample mesh's services send, and
// what of it those services repeat.
//
// Every ID and name a service accepts (order, product, payment and customer
// IDs) is at most [MaxIDBytes] bytes: the protos declare it (protovalidate
// rules), and a longer one is refused with InvalidArgument naming the
// field. Whatever a caller sent that goes into an error message
// or a log line goes through [Clip] (internal/clip's Counted) first, so a caller never gets back, and
// never makes a service log, more than a few dozen bytes of its own input.
//
// Without these bounds a 1 MB customer_id came back in the grpc-message
// trailer: Python grpcio then failed with RESOURCE_EXHAUSTED (its header
// limit is 16 KiB), and grpc-js and connect-node hung until their deadline.
package input
