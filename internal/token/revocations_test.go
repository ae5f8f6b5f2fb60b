package token_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

// commands counts what a client sends to Redis: each command or pipeline
// is one round trip. Pub/Sub traffic does not pass the hooks.
type commands struct{ n atomic.Int64 }

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// instance is one running mailgate's view of the list: its own client,
// with its round trips counted, and its watcher.
type instance struct {
	*token.Manager
	revoked *token.Revocations
	trips   *commands
}

// startInstance runs a watcher on its own client of rdb's options until
// the test ends.
func startInstance(t *testing.T, opts *redis.Options) *instance {
	t.Helper()
	rdb := redis.NewClient(opts)
	trips := &commands{}
	rdb.AddHook(trips)
	revoked := token.NewRevocations(rdb, "mailgate", nil)
	m, err := token.New(token.Options{Key: key, Issuer: "mailgate", Audience: aud, Revoked: revoked})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); revoked.Watch(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := rdb.Close(); err != nil {
			t.Errorf("close Redis client: %v", err)
		}
	})
	return &instance{Manager: m, revoked: revoked, trips: trips}
}

// waitInMemory waits until each instance answers from memory.
func waitInMemory(t *testing.T, in ...*instance) {
	t.Helper()
	for _, i := range in {
		testwait.Until(t, 10*time.Second, i.revoked.InMemory, "the revocation list to be held in memory")
	}
}

func issueFor(t *testing.T, m *token.Manager) (string, *token.Claims) {
	t.Helper()
	raw, c, err := m.Issue("monitoring", token.ScopeApp, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return raw, c
}

// Two instances holding the list in memory check tokens without a Redis
// round trip, and refuse a token revoked elsewhere as soon as Revoke
// returns: it waited for both to confirm.
func TestRevokedRefusedAtOnceFromMemory(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	a := startInstance(t, &redis.Options{Addr: srv.Addr})
	b := startInstance(t, &redis.Options{Addr: srv.Addr})
	raw, c := issueFor(t, a.Manager)
	keep, _ := issueFor(t, a.Manager)
	waitInMemory(t, a, b)

	before := a.trips.n.Load() + b.trips.n.Load()
	for _, in := range []*instance{a, b} {
		for _, tok := range []string{raw, keep} {
			if _, err := in.Verify(ctx, tok); err != nil {
				t.Fatalf("before revocation: %v", err)
			}
		}
	}
	if n := a.trips.n.Load() + b.trips.n.Load() - before; n != 0 {
		t.Fatalf("checking 4 tokens against the list in memory took %d Redis round trips, want 0", n)
	}

	rc, err := token.NewRevocations(srv.Client(), "mailgate", nil).Revoke(ctx, c.ID, c.ExpiresAt.Time)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Listening != 2 || rc.Confirmed != 2 || rc.AckErr != nil {
		t.Fatalf("receipt %+v, want both instances listening and confirming", rc)
	}
	before = a.trips.n.Load() + b.trips.n.Load()
	for name, in := range map[string]*instance{"a": a, "b": b} {
		if _, err := in.Verify(ctx, raw); !errors.Is(err, token.ErrRevoked) {
			t.Errorf("instance %s, right after Revoke returned: %v, want ErrRevoked", name, err)
		}
		if _, err := in.Verify(ctx, keep); err != nil {
			t.Errorf("instance %s refused another token of the app: %v", name, err)
		}
	}
	if n := a.trips.n.Load() + b.trips.n.Load() - before; n != 0 {
		t.Fatalf("the revoked token was refused with %d Redis round trips, want 0 (from memory)", n)
	}
	if !a.revoked.InMemory() || !b.revoked.InMemory() {
		t.Fatal("an instance stopped answering from memory")
	}

	// The mark lives as long as the token could, the set entry too.
	rdb := srv.Client()
	if ttl := rdb.TTL(ctx, "mailgate:revoked:"+c.ID).Val(); ttl <= 0 || ttl > time.Hour+2*time.Minute {
		t.Errorf("mark TTL %v: should live as long as the token could", ttl)
	}
	score, err := rdb.ZScore(ctx, "mailgate:revocations", c.ID).Result()
	if want := c.ExpiresAt.Add(time.Minute).Unix(); err != nil || int64(score) != want {
		t.Errorf("set entry %v %v, want scored %d", score, err, want)
	}
}

// A revocation made while an instance cannot subscribe (its subscription
// killed and channels denied to its Redis user) is refused there all the
// same: the instance asks Redis per request. When it can subscribe again it
// loads the set, so the revocation it never heard of is in memory.
func TestRevokedWhileSubscriptionDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := srv.Client()
	if err := admin.Do(ctx, "ACL", "SETUSER", "mg", "on", ">mg-pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, &redis.Options{Addr: srv.Addr, Username: "mg", Password: "mg-pw"})
	raw, c := issueFor(t, in.Manager)
	waitInMemory(t, in)
	if _, err := in.Verify(ctx, raw); err != nil {
		t.Fatal(err)
	}

	if err := admin.Do(ctx, "ACL", "SETUSER", "mg", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, func() bool { return !in.revoked.InMemory() }, "the instance to notice its subscription is gone")
	rc, err := token.NewRevocations(admin, "mailgate", nil).Revoke(ctx, c.ID, c.ExpiresAt.Time)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Listening != 0 {
		t.Fatalf("receipt %+v: the instance was still subscribed", rc)
	}
	before := in.trips.n.Load()
	if _, err := in.Verify(ctx, raw); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked while the subscription was down: %v, want ErrRevoked", err)
	}
	if in.trips.n.Load() == before {
		t.Fatal("the instance answered without asking Redis while its subscription was down")
	}

	if err := admin.Do(ctx, "ACL", "SETUSER", "mg", "allchannels").Err(); err != nil {
		t.Fatal(err)
	}
	waitInMemory(t, in)
	before = in.trips.n.Load()
	if _, err := in.Verify(ctx, raw); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("after subscribing again: %v, want ErrRevoked", err)
	}
	if in.trips.n.Load() != before {
		t.Fatal("after subscribing again the instance still asked Redis")
	}
}

// With Redis gone an instance does not answer from memory: a token check
// is an infrastructure error (503), as it was before the list was held in
// memory, never a pass; back, the list is loaded again.
func TestRevocationsRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	in := startInstance(t, &redis.Options{Addr: srv.Addr})
	raw, c := issueFor(t, in.Manager)
	waitInMemory(t, in)

	srv.Stop()
	testwait.Until(t, 10*time.Second, func() bool { return !in.revoked.InMemory() }, "the instance to notice Redis is gone")
	if _, err := in.Verify(ctx, raw); err == nil || token.IsAuthError(err) {
		t.Fatalf("Verify with Redis down = %v, want an infrastructure error", err)
	}

	srv.Restart() // no persistence: an empty Redis
	if _, err := token.NewRevocations(srv.Client(), "mailgate", nil).Revoke(ctx, c.ID, c.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Verify(ctx, raw); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked once Redis was back: %v, want ErrRevoked", err)
	}
	waitInMemory(t, in)
	if _, err := in.Verify(ctx, raw); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("from memory after Redis came back: %v, want ErrRevoked", err)
	}
}

// Tokens revoked by an older mailgate, which wrote only the mark, are
// copied into the set by the first instance that loads it, and refused
// from memory.
func TestOldMarksAreIndexed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := srv.Client()
	m, err := token.New(token.Options{Key: key, Issuer: "mailgate", Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	raw, c := issueFor(t, m)
	forever, cf, err := m.Issue("monitoring", token.ScopeApp, 0)
	if err != nil {
		t.Fatal(err)
	}
	stamp := time.Now().UTC().Format(time.RFC3339)
	if err := rdb.Set(ctx, "mailgate:revoked:"+c.ID, stamp, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "mailgate:revoked:"+cf.ID, stamp, 0).Err(); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, &redis.Options{Addr: srv.Addr})
	waitInMemory(t, in)
	for _, tok := range []string{raw, forever} {
		if _, err := in.Verify(ctx, tok); !errors.Is(err, token.ErrRevoked) {
			t.Fatalf("revoked by an older mailgate: %v, want ErrRevoked", err)
		}
	}
	if n := rdb.ZCard(ctx, "mailgate:revocations").Val(); n != 2 {
		t.Fatalf("set holds %d ids, want 2", n)
	}
	if rdb.Exists(ctx, "mailgate:revocations-indexed").Val() != 1 {
		t.Fatal("the copy was not recorded as done")
	}
}
