// Package downstream decides what a service of the sample mesh tells its
// caller when a call it made to another service (its downstream) failed,
// and logs the rest.
//
// A downstream's error is relayed with its own code and message only when
// it is the downstream's answer about the request itself, which our
// services word without addresses or peer IDs and bound (see
// services/internal/input): InvalidArgument, NotFound, AlreadyExists,
// FailedPrecondition and OutOfRange, such as FailedPrecondition
// "insufficient stock for product ...". Every other error may come from the
// transport or the mesh rather than the downstream's logic (a dial error
// with the address, a refused handshake naming the SPIFFE IDs, a policy
// denial naming the hop), so the caller gets a code that tells it what it
// can do and a generic message naming the downstream:
//
//	downstream code                    caller's code and message
//	Unavailable                        Unavailable "orders unavailable"
//	DeadlineExceeded                   DeadlineExceeded "orders timed out"
//	Canceled                           Canceled "orders call canceled"
//	ResourceExhausted                  ResourceExhausted "orders overloaded"
//	Aborted                            Aborted "orders aborted the call"
//	PermissionDenied                   PermissionDenied "orders denied the call"
//	Unauthenticated, Unimplemented,    Internal "orders failed"
//	Internal, Unknown, DataLoss
//
// PermissionDenied stays PermissionDenied: a downstream may decide on who
// the call is for, so the denial can be the caller's. Unauthenticated does
// not: the caller did authenticate, and what a downstream refused was the
// hop's credentials, a fault of the mesh that the caller cannot fix (like
// Unimplemented, a downstream without the method).
//
// The message names the service that was called, not a hop further down
// that failed: when payments is down, the gateway's caller reads "orders
// unavailable". Each hop's log says which: [Log] records the whole error
// with the trace ID of the call, so one trace ID finds every hop's line.
package downstream
