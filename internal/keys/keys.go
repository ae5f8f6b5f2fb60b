// Package keys is the one place that names mailgate's Redis keys, the way
// hibiken/asynq's internal/base does for asynq: every other package asks it
// for a key instead of gluing strings, so the layout, the installation's
// prefix (redis.key_prefix) and the Redis Cluster hash tags cannot drift
// apart between packages.
//
// Every key of one route carries the hash tag {route}, and every key of one
// mailbox of a route the tag {route:mailbox}, so each Lua script touches a
// single slot and the layout stays valid on Redis Cluster. For prefix P,
// route R and mailbox M (lower-cased):
//
//	P:{R}:msg:<id>             hash: one message (package queue)
//	P:{R}:ev:<id>              list: the message's events
//	P:{R}:ready                zset: ids waiting, scored by when they are due
//	P:{R}:inflight             zset: ids taken by a worker, scored by the lease deadline
//	P:{R}:failed               zset: failed ids, scored by when they failed
//	P:{R}:waiting              hash: bytes (and messages, bytes per app) waiting or in flight
//	P:{R}:idem:<app>:<h>       string: the id first answered for an Idempotency-Key
//	P:{R}:replsync             string: the write WAIT measures (redis.min_replicas_acked)
//	P:{R}:health               hash: the route's hold (package routehealth)
//	P:{R}:probe                string: the probe lock of a held route
//	P:{R}:mailbox-wait:<M>     string: until when a mailbox's messages wait
//	P:{R}:lane:<L>             zset: the ready ids of one sending mailbox (lane), scored by due
//	P:{R}:lanes                zset: lanes with ready ids, scored by when the lane may send next
//	P:{R}:lane-wait            hash: lane → the time (ms) before which it may not send
//	P:{R}:expire-lock          string: the lock of the max_age sweep of waiting messages
//	P:limits:{R:M}:conns       zset: connection leases (package limits)
//	P:limits:{R:M}:log         zset: admitted messages and their recipients
//	P:limits:{R:M}:rcpts       string: sum of the recipients in log
//	rate:P:limits:{R:M}:gcra   string: redis_rate's per-minute state
//	P:revoked:<jti>            string: a revoked token id (package token)
//	P:revocations              zset: every revoked token id, scored by when its mark expires
//	P:revocations-indexed      string: set once the marks older than the zset are in it
//	P:revocations (channel)    Pub/Sub: each revocation, as it is made
//	P:revocations:ack:<n>      Pub/Sub: the instances' confirmations of one revocation
//	P:smtp-password:<id>       hash: a short SMTP password's app and hash (package smtppass)
//	rate:P:api:<app>           string: redis_rate's state of an app's API rate limit
//
// redis_rate puts its own "rate:" in front of the key it is given; the names
// above that start with it are given to redis_rate without it. Route names
// cannot contain ':' or braces (config checks them), nor can the prefix
// contain braces, so every hash tag is unambiguous.
package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the prefix of a Space made with an empty one.
const DefaultPrefix = "mailgate"

// Space is the key space of one installation: every key under one prefix.
// Two installations sharing one Redis with different prefixes share nothing.
type Space struct{ prefix string }

// New returns the key space under prefix (DefaultPrefix when empty).
func New(prefix string) Space {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Space{prefix: prefix}
}

// Prefix is the space's prefix.
func (s Space) Prefix() string { return s.prefix }

// Route returns the keys of one route.
func (s Space) Route(route string) Route {
	return Route{base: s.prefix + ":{" + route + "}:"}
}

// Route names the keys of one route; all of them share the hash tag {route}.
type Route struct{ base string }

// Msg is the hash of message id.
func (r Route) Msg(id string) string { return r.base + "msg:" + id }

// Events is the event list of message id.
func (r Route) Events(id string) string { return r.base + "ev:" + id }

// Ready is the zset of ids waiting to be delivered.
func (r Route) Ready() string { return r.base + "ready" }

// Inflight is the zset of ids held by a worker.
func (r Route) Inflight() string { return r.base + "inflight" }

// Failed is the zset of failed ids.
func (r Route) Failed() string { return r.base + "failed" }

// Base is the start every key of the route shares, hash tag included. The
// queue's claim script derives the keys of the lane and the message it
// picks from it (it cannot know them in advance); they share the route's
// hash tag, so the script stays on one slot.
func (r Route) Base() string { return r.base }

// Lane is the zset of the ready ids of one lane: the messages sent as one
// mailbox (package queue). lane is lower-cased by the caller.
func (r Route) Lane(lane string) string { return r.base + "lane:" + lane }

// Lanes is the zset of the route's lanes that hold ready ids, scored by when
// each may send next.
func (r Route) Lanes() string { return r.base + "lanes" }

// LaneWait is the hash of the lanes told to wait: lane → time (ms) before
// which none of its messages is claimed.
func (r Route) LaneWait() string { return r.base + "lane-wait" }

// ExpireLock lets one worker of all instances sweep the route's waiting
// messages past delivery.max_age.
func (r Route) ExpireLock() string { return r.base + "expire-lock" }

// Waiting is the hash of the route's waiting counters (package queue,
// fields.go names its fields): the bytes of the messages waiting or in
// flight, and per app their count and bytes. The app's counters live in the
// route's hash, not in a key of the app, so the enqueue script that checks
// them stays within the route's slot.
func (r Route) Waiting() string { return r.base + "waiting" }

// Idempotency is the record of an app's Idempotency-Key. The key is hashed,
// so arbitrary client input never becomes part of a key name.
func (r Route) Idempotency(app, key string) string {
	h := sha256.Sum256([]byte(key))
	return r.base + "idem:" + app + ":" + hex.EncodeToString(h[:16])
}

// NoIdempotency is a key of the route's slot that is never written, passed to
// a script in place of an idempotency record when the message has none (a
// script must declare every key it may touch, and all of one slot).
func (r Route) NoIdempotency() string { return r.base + "idem:-" }

// ReplicaSync is a small string written just before WAIT when
// redis.min_replicas_acked is set: the replication stream is ordered, so a
// replica that has this write has every earlier write of the route's
// master, even when the enqueue itself wrote nothing (package queue).
func (r Route) ReplicaSync() string { return r.base + "replsync" }

// Health is the hash recording whether the route is held.
func (r Route) Health() string { return r.base + "health" }

// Probe is the lock that lets one worker of all instances probe a held route.
func (r Route) Probe() string { return r.base + "probe" }

// MailboxWait records until when one mailbox's messages wait.
func (r Route) MailboxWait(mailbox string) string {
	return r.base + "mailbox-wait:" + strings.ToLower(mailbox)
}

// Mailbox names the limit keys of one mailbox of a route; all of them share
// the hash tag {route:mailbox}.
type Mailbox struct {
	Conns      string // connection leases
	Log        string // admission log
	Recipients string // running sum of the recipients in Log
	// GCRA is the per-minute limit's key as given to redis_rate, which puts
	// "rate:" in front of it.
	GCRA string
}

// Mailbox returns the limit keys of mailbox on route. It refuses a route name
// that would break the hash tag, and an empty mailbox.
func (s Space) Mailbox(route, mailbox string) (Mailbox, error) {
	if route == "" || strings.ContainsAny(route, ":{}") {
		return Mailbox{}, fmt.Errorf("invalid route name %q", route)
	}
	if mailbox == "" {
		return Mailbox{}, errors.New("empty mailbox")
	}
	base := s.prefix + ":limits:{" + route + ":" + strings.ToLower(mailbox) + "}:"
	return Mailbox{Conns: base + "conns", Log: base + "log", Recipients: base + "rcpts", GCRA: base + "gcra"}, nil
}

// Revoked is the mark of a revoked token id.
func (s Space) Revoked(jti string) string { return s.prefix + ":revoked:" + jti }

// RevokedPattern matches every Revoked key (a SCAN MATCH pattern), for
// finding the marks written before the Revocations set existed.
func (s Space) RevokedPattern() string { return globEscape(s.prefix) + ":revoked:*" }

// Revocations is the sorted set of every revoked token id, scored by when
// its mark may be forgotten (unix seconds, +inf for a token without
// expiry): what a running instance loads into memory (package token).
func (s Space) Revocations() string { return s.prefix + ":revocations" }

// RevocationsIndexed marks that the Revoked keys written before the
// Revocations set existed have been copied into it.
func (s Space) RevocationsIndexed() string { return s.prefix + ":revocations-indexed" }

// RevocationsChannel is the Pub/Sub channel each revocation is published
// on. Channels are not keys (no slot, no expiry), so sharing the name of the
// Revocations set confuses nothing; on a Redis Cluster a PUBLISH reaches
// the subscribers of every node.
func (s Space) RevocationsChannel() string { return s.prefix + ":revocations" }

// RevocationAcks is the channel on which running instances confirm the one
// revocation that named it; nonce makes it unique to that revocation.
func (s Space) RevocationAcks(nonce string) string { return s.prefix + ":revocations:ack:" + nonce }

// globEscape escapes what SCAN MATCH would read as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// SMTPPassword is the record of the short SMTP password with id.
func (s Space) SMTPPassword(id string) string { return s.prefix + ":smtp-password:" + id }

// APIRate is the key of an app's API rate limit as given to redis_rate
// (which puts "rate:" in front of it).
func (s Space) APIRate(app string) string { return s.prefix + ":api:" + app }
