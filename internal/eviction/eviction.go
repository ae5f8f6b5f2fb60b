// Package eviction finds out whether Redis may evict mailgate's keys.
//
// mailgate keeps everything that must not vanish in Redis: queued messages,
// idempotency keys and token revocations. With a maxmemory-policy other than
// noeviction, a Redis that reaches maxmemory deletes keys to make room, and
// nothing tells mailgate: a queued message is silently lost, a retried
// submission is queued twice, and a revoked token works again. With
// noeviction, Redis refuses writes instead, which mailgate turns into a 503
// that the sender retries. (Redis documents the policies at
// https://redis.io/docs/latest/develop/reference/eviction/.)
//
// The policy is read with CONFIG GET maxmemory-policy. Managed services
// (Azure Cache for Redis, ElastiCache, Memorystore) often rename or forbid
// CONFIG, so INFO memory, whose maxmemory_policy field carries the same
// value, is the fallback. When neither answers, the caller can only warn.
package eviction

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// NoEviction is the only policy under which Redis never deletes a key that
// has no expiry of its own.
const NoEviction = "noeviction"

// Result is what Read found.
type Result struct {
	// Policy is Redis's maxmemory-policy; "" when it could not be read.
	Policy string
	// Source says how it was read: "CONFIG GET" or "INFO memory".
	Source string
	// Err is why the policy could not be read (both ways failed).
	Err error
}

// Known reports whether the policy could be read.
func (r Result) Known() bool { return r.Policy != "" }

// Safe reports whether the policy is known to be noeviction.
func (r Result) Safe() bool { return r.Policy == NoEviction }

// Problem explains an unsafe, known policy, naming the setting to change
// and the key that accepts the risk; "" when the policy is safe or unknown.
func (r Result) Problem() string {
	if !r.Known() || r.Safe() {
		return ""
	}
	return fmt.Sprintf("Redis's maxmemory-policy is %q (read with %s): when Redis reaches maxmemory it deletes keys, "+
		"and mailgate would silently lose queued mail, idempotency keys and token revocations (a revoked token could work again). "+
		"Set maxmemory-policy noeviction on the Redis server (with noeviction a full Redis refuses writes, and mailgate answers 503 instead of losing anything), "+
		"or set redis.allow_eviction: true to accept the risk", r.Policy, r.Source)
}

// Read asks Redis for its maxmemory-policy, by CONFIG GET and, failing
// that, by INFO memory.
func Read(ctx context.Context, rdb redis.UniversalClient) Result {
	m, cfgErr := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if cfgErr == nil {
		if p := strings.ToLower(strings.TrimSpace(m["maxmemory-policy"])); p != "" {
			return Result{Policy: p, Source: "CONFIG GET"}
		}
		cfgErr = errors.New("no maxmemory-policy in its answer")
	}
	info, err := rdb.Info(ctx, "memory").Result()
	if err == nil {
		if p := infoField(info, "maxmemory_policy"); p != "" {
			return Result{Policy: strings.ToLower(p), Source: "INFO memory"}
		}
		err = errors.New("INFO memory has no maxmemory_policy field")
	}
	return Result{Err: fmt.Errorf("read maxmemory-policy: CONFIG GET: %v; INFO memory: %w", cfgErr, err)}
}

// infoField returns field's value from the text of INFO ("name:value"
// lines).
func infoField(info, field string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
