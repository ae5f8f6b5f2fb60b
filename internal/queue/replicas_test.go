package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
)

// A node without replicas cannot confirm: the message is stored, the
// answer says it is not replicated, and EnqueueRetrying gives that answer
// at once instead of waiting out its retry window (WAIT already waited).
// test/redisha checks the count with real replicas.
func TestMinReplicasWithoutReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := queue.New(b.srv.Client(), queue.Options{Now: b.clock.Now, MinReplicas: 1, ReplicaTimeout: 20 * time.Millisecond})
	m := message("x")
	m.ID = queue.NewID(b.clock.Now())
	_, _, err := q.EnqueueRetrying(context.Background(), m, time.Hour)
	var nr *queue.NotReplicatedError
	if !errors.As(err, &nr) || nr.Got != 0 || nr.Want != 1 || nr.ID != m.ID {
		t.Fatalf("got %v, want a NotReplicatedError for %s: 0 of 1", err, m.ID)
	}
	if ok, err := q.Exists(context.Background(), m.Route, m.ID); err != nil || !ok {
		t.Fatalf("the unconfirmed message is not stored: %v %v", ok, err)
	}
	// Without the option the same queue answers plainly.
	plain := queue.New(b.srv.Client(), queue.Options{Now: b.clock.Now})
	if _, _, err := plain.Enqueue(context.Background(), message("y")); err != nil {
		t.Fatal(err)
	}

	// A full route is refused as such, before any replica is asked: nothing
	// was stored, so there is nothing to confirm.
	full := message("z")
	full.Limits = queue.Limits{RouteMessages: 1}
	if _, _, err := q.EnqueueRetrying(context.Background(), full, time.Hour); !errors.Is(err, queue.ErrRouteFull) {
		t.Fatalf("over the route's limit with min replicas: %v, want ErrRouteFull", err)
	}

	// A batch: each stored message is reported unreplicated, with its own
	// id, at once (not retried for the hour).
	batch := []queue.Message{message("b1"), message("b2")}
	for i, r := range q.EnqueueManyRetrying(context.Background(), batch, time.Hour) {
		if !errors.As(r.Err, &nr) || nr.ID != batch[i].ID || nr.Got != 0 {
			t.Fatalf("batch item %d: %+v, want a NotReplicatedError for %s", i, r, batch[i].ID)
		}
	}
}
