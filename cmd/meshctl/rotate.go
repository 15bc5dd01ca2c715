package main

import (
	"context"
	"errors"
	"io"
)

// TODO(certs helper): implement.
func certsRotate(_ context.Context, _ string, _ []string, _ io.Writer) error {
	return errors.New("certs rotate: not implemented yet")
}
