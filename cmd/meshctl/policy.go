package main

import (
	"context"
	"errors"
	"io"
)

// policyUsage is the help of "meshctl policy".
const policyUsage = `Usage: meshctl policy <lint|explain|diff> ...
`

// TODO(policy helper): implement.
func policyLint(_ context.Context, _ string, _ []string, _ io.Writer) error {
	return errors.New("policy lint: not implemented yet")
}

func policyExplain(_ context.Context, _ string, _ []string, _ io.Writer) error {
	return errors.New("policy explain: not implemented yet")
}

func policyDiff(_ context.Context, _ string, _ []string, _ io.Writer) error {
	return errors.New("policy diff: not implemented yet")
}
