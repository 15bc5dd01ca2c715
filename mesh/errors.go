package mesh

import "errors"

var errNotTLS = errors.New("mesh: handshake did not produce TLS connection state")
