package token

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RevocationCacheMaxAge is how long an instance may go on accepting a token
// after it was revoked elsewhere: a "not revoked" answer from Redis is
// reused for at most this long, counted from when the question was sent.
// Asking Redis on every request was one of the two round trips of each
// submission; asking once a second per token is none. `mailgate token
// revoke` waits this long before it returns, so that when it says the
// token is revoked, every instance refuses it.
const RevocationCacheMaxAge = time.Second

// maxCachedTokens bounds the cache; past it, expired entries are dropped,
// and when none are, answers are no longer cached (each request asks).
const maxCachedTokens = 10000

// NewCachedRevocations is NewRevocations with the "not revoked" answers
// remembered for RevocationCacheMaxAge. A revoked answer is never cached
// (the entry in Redis stays until the token expires), and neither is an
// error: with Redis unreachable, a token whose answer is older than
// RevocationCacheMaxAge is refused as before (fail closed).
func NewCachedRevocations(rdb redis.UniversalClient, prefix string, now func() time.Time) *Revocations {
	r := NewRevocations(rdb, prefix, now)
	r.cache = &revocationCache{now: r.now, until: map[string]time.Time{}}
	return r
}

// revocationCache holds, per jti, until when "not revoked" may be reused.
type revocationCache struct {
	now   func() time.Time
	mu    sync.Mutex
	until map[string]time.Time
}

// fresh reports whether jti was seen not revoked recently enough.
func (c *revocationCache) fresh(jti string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.until[jti]
	return ok && c.now().Before(u)
}

// notRevoked records that Redis said jti was not revoked, to a question
// sent at asked.
func (c *revocationCache) notRevoked(jti string, asked time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.until) >= maxCachedTokens {
		now := c.now()
		for k, u := range c.until {
			if !now.Before(u) {
				delete(c.until, k)
			}
		}
		if len(c.until) >= maxCachedTokens {
			return
		}
	}
	c.until[jti] = asked.Add(RevocationCacheMaxAge)
}

// forget drops jti, revoked through this instance.
func (c *revocationCache) forget(jti string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.until, jti)
}

// isRevoked answers from the cache or asks Redis with ask.
func (c *revocationCache) isRevoked(ctx context.Context, jti string, ask func(context.Context, string) (bool, error)) (bool, error) {
	if c.fresh(jti) {
		return false, nil
	}
	asked := c.now()
	revoked, err := ask(ctx, jti)
	if err == nil && !revoked {
		c.notRevoked(jti, asked)
	}
	return revoked, err
}
