package fault

import (
	"context"
	"fmt"
	"time"

	"github.com/mailgate/mailgate/test/testwait"
)

// waitCountsDrained waits until nothing of the route waits or is in flight
// and checks that the route's waiting counters (what the queue limits are
// checked against) are then gone: exact after the fault, not merely
// cleared by the next enqueue. A counter left behind would make the route
// look fuller than it is.
func (e *env) waitCountsDrained(timeout time.Duration) {
	e.t.Helper()
	ctx := context.Background()
	testwait.UntilNil(e.t, timeout, func() error {
		ready, inflight, _ := e.depth(ctx)
		counts := e.rdb.HGetAll(ctx, "mailgate:{"+route+"}:waiting").Val()
		if ready+inflight != 0 || len(counts) != 0 {
			return fmt.Errorf("ready=%d inflight=%d, waiting counters %v; want none of them", ready, inflight, counts)
		}
		return nil
	})
}
