// Package idkey holds the context key under which a verified caller's
// identity.Principal travels. It is internal, so that only trustmesh's own
// interceptors (through internal/authn) can put a Principal in a context:
// identity.FromContext then returns only what a verified handshake proved.
package idkey

// Key is the context key of the verified caller.
type Key struct{}
