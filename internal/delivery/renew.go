package delivery

import (
	"context"
	"time"
)

// renewEvery calls renew every interval, in its own goroutine, until the
// returned stop is called or renew reports that what it renews is gone
// (true). It is the one loop behind every lease a worker keeps alive while
// it works: a message's lease in the queue and a connection slot. stop
// waits for a renewal under way to finish.
func renewEvery(every time.Duration, renew func(ctx context.Context) (gone bool)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// A renewal that hangs (Redis away) must not outlast the
				// next one's turn.
				rctx, rcancel := context.WithTimeout(ctx, every)
				gone := renew(rctx)
				rcancel()
				if gone {
					return
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
