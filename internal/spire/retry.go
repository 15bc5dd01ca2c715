package spire

import (
	"context"
	"fmt"
	"time"
)

// Retry calls f with exponential backoff (100ms doubling to 2s) until it
// succeeds, ctx ends or timeout passes; it returns f's last error.
func Retry(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	start := time.Now()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", time.Since(start).Round(time.Second), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
