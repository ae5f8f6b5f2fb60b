// Package routehealth records, in Redis so every instance sees it, whether
// a route is held and whether one of its mailboxes must wait.
//
// A route is held when Exchange Online answered with a configuration error
// or a block (docs/exchange-online.md, "Replies and what a gateway does
// with them": 535 5.7.3, 535 5.7.139, 530 5.7.57,
// 550 5.7.30, 550 5.7.64, 5.2.251–5.2.255, …): every message would fail the
// same way, and retrying them would only earn the mailbox a block. While a
// route is held its messages stay queued, untouched; one worker across all
// instances probes the route (connect, STARTTLS, AUTH) every probe interval,
// and the first success releases it, so delivery resumes by itself once the
// administrator has fixed the cause.
//
// A mailbox waits when Exchange reports its daily recipient quota exhausted
// (554 5.2.0 …SubmissionQuotaExceededException): only its messages wait,
// until the given time.
package routehealth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/keys"
)

// Fields and values of a route's health hash.
const (
	fieldState  = "state"
	fieldReason = "reason"
	fieldSince  = "since"
	stateHeld   = "held"
)

// Health is the shared route state.
type Health struct {
	rdb  redis.UniversalClient
	keys keys.Space
	now  func() time.Time
}

// New returns the route state under prefix.
func New(rdb redis.UniversalClient, prefix string, now func() time.Time) *Health {
	if now == nil {
		now = time.Now
	}
	return &Health{rdb: rdb, keys: keys.New(prefix), now: now}
}

// Hold marks route held for reason. A route already held keeps its first
// "since" and takes the newer reason.
func (h *Health) Hold(ctx context.Context, route, reason string) error {
	k := h.keys.Route(route).Health()
	pipe := h.rdb.TxPipeline()
	pipe.HSetNX(ctx, k, fieldSince, h.now().UnixMilli())
	pipe.HSet(ctx, k, fieldState, stateHeld, fieldReason, reason)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("hold route %s: %w", route, err)
	}
	return nil
}

// Release lifts the hold on route.
func (h *Health) Release(ctx context.Context, route string) error {
	if err := h.rdb.Del(ctx, h.keys.Route(route).Health()).Err(); err != nil {
		return fmt.Errorf("release route %s: %w", route, err)
	}
	return nil
}

// State tells whether route is held, why and since when.
func (h *Health) State(ctx context.Context, route string) (held bool, reason string, since time.Time, err error) {
	v, err := h.rdb.HGetAll(ctx, h.keys.Route(route).Health()).Result()
	if err != nil {
		return false, "", time.Time{}, fmt.Errorf("route %s state: %w", route, err)
	}
	if v[fieldState] != stateHeld {
		return false, "", time.Time{}, nil
	}
	n, _ := strconv.ParseInt(v[fieldSince], 10, 64)
	return true, v[fieldReason], time.UnixMilli(n), nil
}

// TryProbe reports whether the caller may probe route now: at most one
// probe per interval across all instances.
func (h *Health) TryProbe(ctx context.Context, route string, interval time.Duration) (bool, error) {
	ok, err := h.rdb.SetNX(ctx, h.keys.Route(route).Probe(), h.now().UnixMilli(), interval).Result()
	if err != nil {
		return false, fmt.Errorf("route %s probe lock: %w", route, err)
	}
	return ok, nil
}

// HoldMailbox makes mailbox's messages on route wait until until.
func (h *Health) HoldMailbox(ctx context.Context, route, mailbox string, until time.Time, reason string) error {
	ttl := until.Sub(h.now())
	if ttl <= 0 {
		return nil
	}
	k := h.keys.Route(route).MailboxWait(mailbox)
	if err := h.rdb.Set(ctx, k, strconv.FormatInt(until.UnixMilli(), 10)+" "+reason, ttl).Err(); err != nil {
		return fmt.Errorf("hold mailbox %s: %w", mailbox, err)
	}
	return nil
}

// MailboxWait returns until when mailbox's messages wait (zero when they
// do not) and why.
func (h *Health) MailboxWait(ctx context.Context, route, mailbox string) (until time.Time, reason string, err error) {
	v, err := h.rdb.Get(ctx, h.keys.Route(route).MailboxWait(mailbox)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, "", nil
	}
	if err != nil {
		return time.Time{}, "", fmt.Errorf("mailbox %s wait: %w", mailbox, err)
	}
	ms, reason, _ := strings.Cut(v, " ")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n), reason, nil
}
