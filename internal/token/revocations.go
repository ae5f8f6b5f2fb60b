package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/keys"
)

// Timing of the in-memory list (see Revocations).
const (
	// pingEvery is how long an idle subscription waits before it pings
	// Redis, so that silence can be told from a dead connection.
	pingEvery = time.Second
	// staleAfter is how long the in-memory list is trusted after the
	// subscription was last heard from (a message or a ping's answer).
	staleAfter = 3 * time.Second
	// ackWait bounds how long Revoke waits for the running instances to
	// confirm. It is longer than staleAfter: an instance that has not
	// confirmed by then no longer trusts its copy and asks Redis.
	ackWait = staleAfter + time.Second
	// pruneEvery is how often the watcher drops ids whose tokens expired.
	pruneEvery = time.Minute
	// Between two failed subscriptions the watcher waits from minBackoff,
	// doubling up to maxBackoff; requests meanwhile ask Redis.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
	// never is the expiry of a token without one.
	never = math.MaxInt64
)

// Revocations is the list of revoked token ids, shared by every instance
// through Redis.
//
// Revoke writes, in this order: the mark P:revoked:<jti> (a string that
// expires a minute after the token does, beyond the verification leeway;
// what each request asks about while the list is not held in memory), the
// id in the sorted set P:revocations scored by when the mark expires (so the
// whole list is read with one command, not by scanning the key space), and
// a message on the Pub/Sub channel P:revocations (package keys). What it
// relies on in Redis Pub/Sub, Cluster and Sentinel is in docs/redis-ha.md
// ("Pub/Sub: the token revocation channel").
//
// An instance running Watch holds the list in memory and answers IsRevoked
// without a Redis round trip. It subscribes to the channel first and reads
// the set only once Redis has confirmed the subscription: an id revoked
// before the read is in the set, one revoked after it arrives on the
// channel, so nothing falls in between. It fails closed: IsRevoked asks
// Redis, as every request did before, and an unreachable Redis is an error
// (503), never a pass, whenever the copy cannot be known to be current:
//
//   - before the first subscription is confirmed and the set read;
//   - from the moment the subscription fails (Redis restarted, the
//     connection killed, a Sentinel failover: the demoted master drops its
//     Pub/Sub clients and the client reconnects to the new one; a Cluster
//     failover of the node it was on) until a new one is confirmed and the
//     set read again;
//   - when nothing has been heard on the subscription for staleAfter,
//     although an idle one is pinged every pingEvery: a connection that died
//     without a word (a network partition) or a process that stood still
//     cannot miss a revocation for longer than that.
//
// PUBLISH says how many subscribers a message reached, not that they read
// it. So Revoke first subscribes to a channel of its own and names it in
// the message; each instance confirms there once the id is in its memory,
// and Revoke waits for as many confirmations as there were subscribers (on
// a Cluster, where PUBLISH counts those of one node, PUBSUB NUMSUB summed
// over every node), for at most ackWait. When it returns, every instance
// refuses the token: it confirmed, or its subscription has been silent for
// longer than staleAfter and it asks Redis.
//
// The set and the copies in memory forget an id once its mark has expired
// (Revoke trims the set, each watcher its copy once a minute), so they hold
// the tokens revoked and not yet expired, and no more. Marks written before
// the set existed (by an older mailgate) are copied into it once per
// installation, by the first watcher that reads the list; P:revocations-
// indexed records that it was done.
type Revocations struct {
	rdb  redis.UniversalClient
	keys keys.Space
	now  func() time.Time
	// pruneInterval is pruneEvery; a test shortens it to see the watcher
	// prune without the minute's jump of its clock that would also make it
	// reload the set.
	pruneInterval time.Duration

	// memory is the in-memory list (id → when its mark expires, unix
	// seconds), nil while it is not known to be complete.
	memory atomic.Pointer[map[string]int64]
	// heard is when (by now) the subscription last delivered anything, or
	// was made; the watcher measures its silence by it too.
	heard    atomic.Pointer[time.Time]
	watching atomic.Bool
}

// NewRevocations returns the revocation list under prefix. Until Watch runs
// it asks Redis on every IsRevoked.
func NewRevocations(rdb redis.UniversalClient, prefix string, now func() time.Time) *Revocations {
	if now == nil {
		now = time.Now
	}
	return &Revocations{rdb: rdb, keys: keys.New(prefix), now: now, pruneInterval: pruneEvery}
}

// notice is the message published for one revocation.
type notice struct {
	JTI string `json:"jti"`
	// Until is when the mark expires (unix seconds); 0: never.
	Until int64 `json:"until,omitempty"`
	// Ack is the channel to confirm on.
	Ack string `json:"ack,omitempty"`
}

// Receipt says which running instances confirmed a revocation.
type Receipt struct {
	// Listening is how many instances were subscribed when it was
	// published; -1 when that could not be counted.
	Listening int
	// Confirmed is how many confirmed it within the wait.
	Confirmed int
	// AckErr says why confirmations could not be collected; Revoke then
	// waited the whole ackWait. The revocation stands all the same.
	AckErr error
}

// Revoke adds jti to the list and waits until the running instances have
// it in memory (see Revocations). The entry lives until the token would
// have expired anyway (forever for a token without expiry). An error means
// the revocation may not be in force: revoking again is always safe.
func (r *Revocations) Revoke(ctx context.Context, jti string, expires time.Time) (Receipt, error) {
	now := r.now()
	var ttl time.Duration
	score, until := math.Inf(1), int64(0)
	if !expires.IsZero() {
		end := expires.Add(time.Minute) // outlive the verification leeway
		ttl = end.Sub(now)
		if ttl <= 0 {
			return Receipt{}, nil // already expired: nothing to refuse
		}
		until = ceilUnix(end)
		score = float64(until)
	}
	ackChannel := r.keys.RevocationAcks(randomID())
	// Listening before publishing, so no confirmation is missed.
	acks, ackErr := listen(ctx, r.rdb, ackChannel)
	if acks != nil {
		defer acks.Close()
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.keys.Revoked(jti), now.UTC().Format(time.RFC3339), ttl)
		p.ZAdd(ctx, r.keys.Revocations(), redis.Z{Score: score, Member: jti})
		// Forgotten from the second it expires, as load and prune do.
		p.ZRemRangeByScore(ctx, r.keys.Revocations(), "-inf", strconv.FormatInt(now.Unix(), 10))
		return nil
	})
	if err != nil {
		return Receipt{}, fmt.Errorf("revoke %s: %w", jti, err)
	}
	msg, err := json.Marshal(notice{JTI: jti, Until: until, Ack: ackChannel})
	if err != nil {
		return Receipt{}, fmt.Errorf("revoke %s: %w", jti, err)
	}
	n, err := r.rdb.Publish(ctx, r.keys.RevocationsChannel(), msg).Result()
	if err != nil {
		return Receipt{}, fmt.Errorf("revoke %s: stored, but the running instances could not be told, "+
			"and those holding the list in memory may accept it: %w", jti, err)
	}
	rc := Receipt{Listening: int(n), AckErr: ackErr}
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		if rc.Listening, err = subscribers(ctx, cc, r.keys.RevocationsChannel()); err != nil {
			rc.Listening, rc.AckErr = -1, errors.Join(rc.AckErr, fmt.Errorf("count the subscribers: %w", err))
		}
	}
	if rc.Listening == 0 {
		return rc, nil
	}
	wctx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	if acks == nil {
		// Nobody can be heard confirming: wait until every instance has
		// either read the message or stopped trusting its copy.
		<-wctx.Done()
		return rc, nil
	}
	for rc.Listening < 0 || rc.Confirmed < rc.Listening {
		m, err := acks.ReceiveTimeout(wctx, ackWait)
		if err != nil {
			if wctx.Err() == nil && !isTimeout(err) {
				rc.AckErr = errors.Join(rc.AckErr, err)
				<-wctx.Done()
			}
			break
		}
		if _, ok := m.(*redis.Message); ok {
			rc.Confirmed++
		}
	}
	return rc, nil
}

// listen subscribes to channel and waits until Redis confirms it: only
// then is a message published on it sure to arrive.
func listen(ctx context.Context, rdb redis.UniversalClient, channel string) (*redis.PubSub, error) {
	ps := rdb.Subscribe(ctx, channel)
	sctx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	m, err := ps.ReceiveTimeout(sctx, ackWait)
	if err == nil {
		if _, ok := m.(*redis.Subscription); !ok {
			err = fmt.Errorf("subscribe %s: Redis answered %v", channel, m)
		}
	}
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("listen for confirmations: %w", err)
	}
	return ps, nil
}

// subscribers counts the subscribers of channel on every node of a
// cluster, where PUBLISH reaches them all but counts those of one node.
func subscribers(ctx context.Context, cc *redis.ClusterClient, channel string) (int, error) {
	var total atomic.Int64
	err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		m, err := c.PubSubNumSub(ctx, channel).Result()
		total.Add(m[channel])
		return err
	})
	return int(total.Load()), err
}

// IsRevoked reports whether jti was revoked: from memory while the list
// held there is known to be current, else by asking Redis.
func (r *Revocations) IsRevoked(ctx context.Context, jti string) (bool, error) {
	if ids := r.current(); ids != nil {
		_, revoked := ids[jti]
		return revoked, nil
	}
	n, err := r.rdb.Exists(ctx, r.keys.Revoked(jti)).Result()
	if err != nil {
		return false, fmt.Errorf("ask revocation list: %w", err)
	}
	return n == 1, nil
}

// InMemory reports whether IsRevoked answers from memory, without asking
// Redis.
func (r *Revocations) InMemory() bool { return r.current() != nil }

// current is the in-memory list when it is known to be current, else nil.
func (r *Revocations) current() map[string]int64 {
	p, heard := r.memory.Load(), r.heard.Load()
	if p == nil || heard == nil || r.now().Sub(*heard) >= staleAfter {
		return nil
	}
	return *p
}

// Watch holds the list in memory and keeps it current until ctx ends (see
// Revocations). A second Watch of the same list returns at once.
func (r *Revocations) Watch(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !r.watching.CompareAndSwap(false, true) {
		return
	}
	defer r.watching.Store(false)
	backoff, warned := minBackoff, false
	for ctx.Err() == nil {
		synced, err := r.follow(ctx, log)
		r.memory.Store(nil)
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff, warned = minBackoff, false
		}
		if !warned {
			log.Warn("cannot follow token revocations; each request asks Redis until it can again", "err", err)
			warned = true
		}
		if cc, ok := r.rdb.(*redis.ClusterClient); ok {
			// go-redis learns of a failover from a MOVED answer or every
			// minute; a master that died answers nothing, and the
			// subscription would go on dialling it.
			cc.ReloadState(ctx)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, maxBackoff)
	}
}

// errSilent ends a subscription that has not answered for staleAfter.
var errSilent = fmt.Errorf("nothing heard on the revocation channel for %v", staleAfter)

// follow holds one subscription until it fails; synced reports whether the
// list was held in memory meanwhile.
func (r *Revocations) follow(ctx context.Context, log *slog.Logger) (synced bool, err error) {
	ps := r.rdb.Subscribe(ctx, r.keys.RevocationsChannel())
	defer ps.Close()
	// A read in progress does not watch ctx; closing ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	var ids map[string]int64 // nil until the set was read
	// The silence is counted from now; memory is nil until the set is read,
	// so this does not make the list trusted.
	start := r.now()
	r.heard.Store(&start)
	// pings counts the pings not answered yet; answers come in order.
	pruned, pings := start, 0
	for {
		m, err := ps.ReceiveTimeout(ctx, pingEvery)
		now := r.now()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return synced, ctx.Err()
			case !isTimeout(err):
				return synced, err
			case now.Sub(*r.heard.Load()) >= staleAfter:
				return synced, errSilent
			case pings == 0:
				if err := ps.Ping(ctx); err != nil {
					return synced, err
				}
				pings++
			}
			continue
		}
		r.heard.Store(&now)
		switch m := m.(type) {
		case *redis.Subscription:
			// The first confirmation, or go-redis subscribed again on a
			// new connection: what was published in between is only in
			// the set.
			r.memory.Store(nil)
			if ids, err = r.load(ctx); err != nil {
				return synced, err
			}
			// Trusted from its answer on, which comes after every
			// message that arrived while the set was read.
			if err := ps.Ping(ctx); err != nil {
				return synced, err
			}
			pings++
		case *redis.Pong:
			pings = max(pings-1, 0)
			if pings == 0 && ids != nil && r.memory.Load() == nil {
				r.keep(ids)
				synced = true
				log.Info("token revocations held in memory", "revoked", len(ids))
			}
		case *redis.Message:
			var n notice
			if err := json.Unmarshal([]byte(m.Payload), &n); err != nil || n.JTI == "" {
				// A revocation that cannot be read must not be missed:
				// start again from the set.
				return synced, fmt.Errorf("unreadable message on the revocation channel: %q", m.Payload)
			}
			if ids == nil {
				return synced, errors.New("revocation channel delivered a message before its subscription")
			}
			ids[n.JTI] = never
			if n.Until > 0 {
				ids[n.JTI] = n.Until
			}
			if r.memory.Load() != nil {
				r.keep(ids)
			}
			if n.Ack != "" {
				actx, cancel := context.WithTimeout(ctx, ackWait)
				if err := r.rdb.Publish(actx, n.Ack, "").Err(); err != nil {
					log.Warn("cannot confirm a revocation (it is in force here all the same)", "jti", n.JTI, "err", err)
				}
				cancel()
			}
		}
		if ids != nil && now.Sub(pruned) >= r.pruneInterval {
			pruned = now
			if prune(ids, now.Unix()) && r.memory.Load() != nil {
				r.keep(ids)
			}
		}
	}
}

// keep makes a copy of ids the list IsRevoked answers from.
func (r *Revocations) keep(ids map[string]int64) {
	cp := maps.Clone(ids)
	r.memory.Store(&cp)
}

// prune drops the ids whose marks expired by now; it reports whether any
// was.
func prune(ids map[string]int64, now int64) bool {
	n := len(ids)
	maps.DeleteFunc(ids, func(_ string, until int64) bool { return until <= now })
	return len(ids) != n
}

// load reads the whole list from the set.
func (r *Revocations) load(ctx context.Context) (map[string]int64, error) {
	if err := r.indexOldMarks(ctx); err != nil {
		return nil, err
	}
	zs, err := r.rdb.ZRangeByScoreWithScores(ctx, r.keys.Revocations(),
		&redis.ZRangeBy{Min: "(" + strconv.FormatInt(r.now().Unix(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("read the revocation list: %w", err)
	}
	ids := make(map[string]int64, len(zs))
	for _, z := range zs {
		jti, _ := z.Member.(string)
		ids[jti] = never
		if !math.IsInf(z.Score, 1) && z.Score < never {
			ids[jti] = int64(z.Score)
		}
	}
	return ids, nil
}

// indexOldMarks copies into the set the marks an older mailgate wrote
// without it, once per installation: a token revoked before the upgrade
// stays revoked.
func (r *Revocations) indexOldMarks(ctx context.Context) error {
	done, err := r.rdb.Exists(ctx, r.keys.RevocationsIndexed()).Result()
	if err != nil {
		return fmt.Errorf("read the revocation list: %w", err)
	}
	if done == 1 {
		return nil
	}
	scan := func(ctx context.Context, node redis.Cmdable) error {
		var found []string
		iter := node.Scan(ctx, 0, r.keys.RevokedPattern(), 1000).Iterator()
		for iter.Next(ctx) {
			found = append(found, iter.Val())
		}
		if err := iter.Err(); err != nil || len(found) == 0 {
			return err
		}
		ttls := make([]*redis.DurationCmd, len(found))
		if _, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range found {
				ttls[i] = p.PTTL(ctx, k)
			}
			return nil
		}); err != nil {
			return err
		}
		now := r.now()
		zs := make([]redis.Z, 0, len(found))
		for i, k := range found {
			z := redis.Z{Score: math.Inf(1), Member: strings.TrimPrefix(k, r.keys.Revoked(""))}
			switch d := ttls[i].Val(); {
			case d == -2: // gone since the scan
				continue
			case d > 0:
				z.Score = float64(ceilUnix(now.Add(d)))
			}
			zs = append(zs, z)
		}
		if len(zs) == 0 {
			return nil
		}
		return r.rdb.ZAdd(ctx, r.keys.Revocations(), zs...).Err()
	}
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, r.rdb)
	}
	if err == nil {
		err = r.rdb.Set(ctx, r.keys.RevocationsIndexed(), r.now().UTC().Format(time.RFC3339), 0).Err()
	}
	if err != nil {
		return fmt.Errorf("index the revocations of an older mailgate: %w", err)
	}
	return nil
}

// ceilUnix is t in unix seconds rounded up, so that an id is forgotten no
// sooner than its mark expires.
func ceilUnix(t time.Time) int64 { return t.Add(time.Second - 1).Unix() }

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
