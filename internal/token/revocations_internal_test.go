package token

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testclock"
	"github.com/mailgate/mailgate/test/testwait"
)

// A revoked id is forgotten once its token has expired, in memory and in
// the set; one of a token without expiry is kept. Memory stays as large as
// the revocations still in force.
func TestRevocationsForgetExpired(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := srv.Client()
	clock := testclock.New(time.Now())
	r := NewRevocations(rdb, "mailgate", clock.Now)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Watch(wctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.Until(t, 10*time.Second, r.InMemory, "the list to be held in memory")

	for jti, expires := range map[string]time.Time{"hour": clock.Now().Add(time.Hour), "forever": {}} {
		if rc, err := r.Revoke(ctx, jti, expires); err != nil || rc.Confirmed != 1 {
			t.Fatalf("revoke %s: %+v %v", jti, rc, err)
		}
	}
	if ids := r.current(); len(ids) != 2 {
		t.Fatalf("in memory: %v, want both ids", ids)
	}
	// Past the token's expiry and the minute of leeway after it. By the
	// injected clock the subscription has then been silent for longer than
	// staleAfter, so the watcher reloads the set, which leaves the id out;
	// TestWatcherPrunesMemory sees the memory pruned without a reload.
	clock.Advance(time.Hour + 2*time.Minute)
	testwait.Until(t, 10*time.Second, func() bool {
		ids := r.current()
		_, hour := ids["hour"]
		_, forever := ids["forever"]
		return ids != nil && !hour && forever
	}, "the expired id to be forgotten in memory, and only it")
	// An id whose mark expires this very second goes too, as it does from
	// memory (prune).
	if err := rdb.ZAdd(ctx, "mailgate:revocations", redis.Z{Score: float64(clock.Now().Unix()), Member: "edge"}).Err(); err != nil {
		t.Fatal(err)
	}
	if rc, err := r.Revoke(ctx, "later", clock.Now().Add(time.Hour)); err != nil || rc.Confirmed != 1 {
		t.Fatalf("revoke later: %+v %v", rc, err)
	}
	got, err := rdb.ZRange(ctx, "mailgate:revocations", 0, -1).Result()
	if err != nil || len(got) != 2 || got[0] != "later" || got[1] != "forever" {
		t.Fatalf("set after a revocation trimmed it: %v %v, want [later forever]", got, err)
	}
	// A token already expired is not written at all.
	if rc, err := r.Revoke(ctx, "old", clock.Now().Add(-time.Hour)); err != nil || rc.Listening != 0 {
		t.Fatalf("revoke an expired token: %+v %v", rc, err)
	}
	if rdb.Exists(ctx, "mailgate:revoked:old").Val() != 0 || rdb.ZScore(ctx, "mailgate:revocations", "old").Err() == nil {
		t.Fatal("an expired token was written")
	}
}

// The watcher drops from memory an id whose mark has expired, while its
// subscription stays up: nothing is reloaded from the set, which would drop
// it (the clock moves less than staleAfter).
func TestWatcherPrunesMemory(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	clock := testclock.New(time.Now())
	r := NewRevocations(srv.Client(), "mailgate", clock.Now)
	r.pruneInterval = time.Second
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Watch(wctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.Until(t, 10*time.Second, r.InMemory, "the list to be held in memory")

	// The mark outlives the token by a minute: it expires within 2 s.
	if rc, err := r.Revoke(ctx, "soon", clock.Now().Add(-time.Minute+time.Second)); err != nil || rc.Confirmed != 1 {
		t.Fatalf("revoke soon: %+v %v", rc, err)
	}
	if rc, err := r.Revoke(ctx, "forever", time.Time{}); err != nil || rc.Confirmed != 1 {
		t.Fatalf("revoke forever: %+v %v", rc, err)
	}
	if _, soon := r.current()["soon"]; !soon {
		t.Fatal("a revoked id is not in memory")
	}
	// Kept for good in the set: a reload would bring it back, only pruning
	// the memory drops it.
	if err := srv.Client().ZAdd(ctx, "mailgate:revocations", redis.Z{Score: math.Inf(1), Member: "soon"}).Err(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(staleAfter - time.Second)
	testwait.Until(t, 10*time.Second, func() bool {
		ids := r.current()
		_, soon := ids["soon"]
		_, forever := ids["forever"]
		return ids != nil && !soon && forever
	}, "the expired id to be pruned from memory, and only it")
}

func TestPrune(t *testing.T) {
	t.Parallel()
	ids := map[string]int64{"past": 99, "now": 100, "later": 101, "never": never}
	if !prune(ids, 100) || len(ids) != 2 || ids["later"] != 101 || ids["never"] != never {
		t.Fatalf("after prune: %v", ids)
	}
	if prune(ids, 100) {
		t.Fatal("a second prune reported a change")
	}
}
