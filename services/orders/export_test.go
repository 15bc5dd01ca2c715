package orders

import "time"

// SetAfter replaces the timer of s's status steps; call it before creating
// orders.
func SetAfter(s *Server, after func(time.Duration) <-chan time.Time) { s.after = after }
